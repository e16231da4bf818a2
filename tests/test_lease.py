"""The jobs' lease (issue 18, replicas; decision 0021): taken and renewed in one statement,
refused while another holder's time runs, taken over once it ran out, released; the
scheduler runs its leased jobs only while it holds the lease; a due alert delivery is
claimed by one sender; a `serve` shows who holds the lease."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifinops.api.jobs import Job, JobLease, Scheduler
from aifinops.config import load_settings
from aifinops.service import Service
from aifinops.store import budgets as stored_budgets
from aifinops.store import lease
from aifinops.store.db import Store
from tests import test_api
from tests.conftest import PostgresSchemas, Served, free_port

serve = test_api.serve  # the fixture: the app on a free loopback port

T = 1_795_392_000_000  # 2026-11-23T00:00:00Z in ms


@pytest.mark.engines
def test_take_renew_refuse_take_over_release(store_url: Callable[[str], str]) -> None:
    store = Store(store_url("take.duckdb"))
    assert lease.held(store, "jobs") is None
    # no one holds it: taken until T + 30 s
    assert lease.take(store, "jobs", "a", T, 30_000)
    assert lease.held(store, "jobs") == {"name": "jobs", "holder": "a", "acquired_ms": T,
                                         "expires_ms": T + 30_000}  # fmt: skip
    # another replica is refused while a's time runs, up to its last millisecond
    assert not lease.take(store, "jobs", "b", T + 10_000, 30_000)
    assert not lease.take(store, "jobs", "b", T + 29_999, 30_000)
    assert lease.held(store, "jobs")["holder"] == "a"  # type: ignore[index]
    # a renews: the time moves on, the start stays
    assert lease.take(store, "jobs", "a", T + 20_000, 30_000)
    assert lease.held(store, "jobs") == {"name": "jobs", "holder": "a", "acquired_ms": T,
                                         "expires_ms": T + 50_000}  # fmt: skip
    # a stops renewing: at its expiry b takes it over, from then
    assert not lease.take(store, "jobs", "b", T + 49_999, 30_000)
    assert lease.take(store, "jobs", "b", T + 50_000, 30_000)
    assert lease.held(store, "jobs") == {"name": "jobs", "holder": "b",
                                         "acquired_ms": T + 50_000,
                                         "expires_ms": T + 80_000}  # fmt: skip
    # a comes back (it hung): refused, b's time runs
    assert not lease.take(store, "jobs", "a", T + 51_000, 30_000)
    # only the holder releases it; then anyone takes it at once
    assert not lease.release(store, "jobs", "a")
    assert lease.release(store, "jobs", "b")
    assert lease.held(store, "jobs") is None
    assert lease.take(store, "jobs", "a", T + 52_000, 30_000)
    assert lease.held(store, "jobs")["acquired_ms"] == T + 52_000  # type: ignore[index]
    # a holder that renews after its own time ran out (no one took it) starts again
    assert lease.take(store, "jobs", "a", T + 90_000, 30_000)
    assert lease.held(store, "jobs")["acquired_ms"] == T + 90_000  # type: ignore[index]
    # leases are by name
    assert lease.take(store, "other", "b", T + 90_000, 30_000)
    assert lease.held(store, "jobs")["holder"] == "a"  # type: ignore[index]
    # forced (a DuckDB file's one server, restarted): taken while a's time still runs
    assert lease.take(store, "jobs", "c", T + 91_000, 30_000, force=True)
    assert lease.held(store, "jobs") == {"name": "jobs", "holder": "c",
                                         "acquired_ms": T + 91_000,
                                         "expires_ms": T + 121_000}  # fmt: skip
    store.close()


@pytest.mark.engines
def test_service_lease_on_its_clock(make_service: Callable[..., Service]) -> None:
    now = [datetime(2026, 11, 23, tzinfo=UTC)]
    a = make_service(name="l.duckdb", clock=lambda: now[0])
    seen = a.take_lease("jobs", "host:1:aa", 30)
    assert seen.held and seen.holder == "host:1:aa"
    assert seen.to_dict() == {"name": "jobs", "holder": "host:1:aa", "held": True,
                              "this_replica": "host:1:aa",
                              "acquired_at": "2026-11-23T00:00:00Z",
                              "expires_at": "2026-11-23T00:00:30Z",
                              "checked_at": "2026-11-23T00:00:00Z"}  # fmt: skip
    other = a.take_lease("jobs", "host:2:bb", 30)
    assert not other.held and other.holder == "host:1:aa"
    now[0] += timedelta(seconds=31)
    # ran out: no one holds it, as any replica sees it, until one takes it
    assert a.lease("jobs", "host:2:bb").holder is None
    assert a.take_lease("jobs", "host:2:bb", 30).held
    assert not a.release_lease("jobs", "host:1:aa")
    assert a.release_lease("jobs", "host:2:bb")


def _replica(svc: Service, me: str, ttl_s: float, ran: list[str]) -> Scheduler:
    job = Job("collect", 0.0, lambda: ran.append(me) or "done")  # type: ignore[func-returns-value]
    local = Job("metrics", 0.0, lambda: ran.append(f"{me}-local") or None, leased=False)  # type: ignore[func-returns-value]
    held = JobLease(me, ttl_s, lambda: svc.take_lease("jobs", me, ttl_s).held,
                    lambda: svc.release_lease("jobs", me))  # fmt: skip
    return Scheduler([job, local], lease=held)


@pytest.mark.engines
def test_scheduler_runs_leased_jobs_on_the_holder_only(
    make_service: Callable[..., Service],
) -> None:
    """Two schedulers on one store (their clock the test's): the one holding the lease runs
    the leased job, the other only its local one; when the holder stops renewing, the
    other takes over once the lease ran out; a holder that stops releases it."""
    now = [datetime(2026, 11, 23, tzinfo=UTC)]
    svc = make_service(name="s.duckdb", clock=lambda: now[0])
    ran: list[str] = []
    ttl = 0.4  # the lease's time (the test's clock); retries each 0.1 s (the real one)
    a, b = _replica(svc, "a", ttl, ran), _replica(svc, "b", ttl, ran)
    a.run_due()
    b.run_due()
    assert ran == ["a", "a-local", "b-local"]
    assert a.lease.held and not b.lease.held  # type: ignore[union-attr]
    # a renews (a third of its time has passed), b is refused
    time.sleep(0.15)
    now[0] += timedelta(seconds=0.2)
    ran.clear()
    a.run_due()
    b.run_due()
    assert ran == ["a", "a-local", "b-local"]
    assert svc.lease("jobs", "b").holder == "a"
    # a hangs (it renews no more): once its time ran out, b takes over
    now[0] += timedelta(seconds=0.6)
    time.sleep(0.15)
    ran.clear()
    b.run_due()
    assert ran == ["b", "b-local"] and b.lease.held  # type: ignore[union-attr]
    # a wakes up: its renewal is refused, it runs no leased job
    time.sleep(0.15)
    a.run_due()
    assert ran == ["b", "b-local", "a-local"] and not a.lease.held  # type: ignore[union-attr]
    # b stops: it releases the lease, and a takes it at its next try
    assert b.stop()
    assert svc.lease("jobs", "a").holder is None
    time.sleep(0.15)
    ran.clear()
    a.run_due()
    assert ran == ["a", "a-local"]


def test_a_lease_that_cannot_be_renewed_is_lost() -> None:
    """The store is unreachable: the replica runs no leased job (another may hold the lease
    by now), and says why."""
    answers: list[Any] = [True, RuntimeError("connection refused")]

    def take() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    held = JobLease("a", 0.3, take, lambda: None)
    assert held.hold()
    time.sleep(0.11)
    assert not held.hold()
    assert held.status()["last_error"] == "RuntimeError: connection refused"


@pytest.mark.engines
def test_a_due_delivery_is_claimed_by_one_sender(make_service: Callable[..., Service]) -> None:
    """Two senders (replicas) read the same due delivery: one claims it and sends it; the
    other's claim finds it moved on. Claimed and not recorded (its sender died), it is due
    again when the claim runs out."""
    svc = make_service(name="d.duckdb")
    store = svc.store
    assert stored_budgets.add_delivery(store, "k", "fire", "webhook:x", "{}", "{}", T)
    due_a = stored_budgets.deliveries(store, due_ms=T + 1)
    due_b = stored_budgets.deliveries(store, due_ms=T + 1)
    assert len(due_a) == len(due_b) == 1
    assert stored_budgets.claim(store, due_a[0], T + 60_000)
    assert not stored_budgets.claim(store, due_b[0], T + 60_000)
    assert stored_budgets.deliveries(store, due_ms=T + 59_999) == []
    again = stored_budgets.deliveries(store, due_ms=T + 60_000)
    assert [d["key"] for d in again] == ["k"]
    # the service's claim: what it claimed, with the claim's time; a second claim of the
    # same rows gets none
    claimed = svc.claim_alerts(again)
    assert [d["key"] for d in claimed] == ["k"] and claimed[0]["next_ms"] > T + 60_000
    assert svc.claim_alerts(again) == []


def test_serve_holds_the_lease_and_releases_it(serve: Any, tmp_path: Path) -> None:
    """One `serve` on DuckDB: it takes the lease at once, says so on /api/v1/jobs and
    /health, runs its jobs, and gives the lease up when it stops."""
    db = tmp_path / "one.duckdb"
    Store(db).close()
    api = serve(db, {"server": {"lease_seconds": 5}}, jobs=True)
    deadline = time.monotonic() + 30
    while True:
        doc = api.get("/api/v1/jobs").json()
        if doc["lease"]["held"]:
            break
        assert time.monotonic() < deadline, doc
        time.sleep(0.1)
    me = doc["lease"]["this_replica"]
    assert doc["lease"]["holder"] == me and doc["lease"]["running_jobs"]
    assert doc["lease"]["ttl_seconds"] == 5
    assert {j["name"]: j["leased"] for j in doc["jobs"]}["metrics"] is False
    assert api.get("/health").json()["replica"] == {"id": me, "runs_jobs": True}
    api.server.should_exit = True
    api.thread.join(30)
    settings = load_settings(None, env={}, flags={"db": str(db)})
    with Service(settings) as svc:
        assert svc.lease("jobs", me).holder is None
        assert svc.store.raw("SELECT count(*) FROM leases") == [(0,)]
        # a server that died holding it (a restart after a crash): the next one on the same
        # file takes it at once, not after the lease ran out
        assert svc.take_lease("jobs", "dead:1:00", 3600).held
    again = serve(db, {"server": {"lease_seconds": 5}}, jobs=True)
    _wait("the restarted server holding the lease",
          lambda: again.get("/api/v1/jobs").json()["lease"]["held"], 20)  # fmt: skip
    now_held = again.get("/api/v1/jobs").json()["lease"]
    assert now_held["holder"] == now_held["this_replica"] != "dead:1:00"


# -- two replicas on one PostgreSQL ---------------------------------------------------------
@pytest.fixture
def pg_store(pg_schemas: PostgresSchemas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store URL on a PostgreSQL schema of its own, migrated (dropped after the test;
    PostgreSQL unreachable: a skip here, a failure in CI)."""
    url = pg_schemas.url("lease")
    monkeypatch.chdir(tmp_path)
    Store(url).close()
    return url


class _Slow:
    """A dcgm-exporter that answers 404 at once (a failed collection pass), except the one
    scrape after `stalling` is set, which hangs (`stuck` is set) until `freed` or `close()`:
    a collect job in progress."""

    def __init__(self) -> None:
        import http.server

        self.stalling, self.stuck, self.freed = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if outer.stalling.is_set():
                    outer.stalling.clear()
                    outer.stuck.set()
                    outer.freed.wait(60)
                with contextlib.suppress(OSError):  # its client was killed meanwhile
                    self.send_error(404)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def close(self) -> None:
        self.freed.set()
        self.server.shutdown()
        self.server.server_close()


def _wait(what: str, ok: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got = ok()
        except httpx.HTTPError:
            got = None
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_replicas_one_runs_the_jobs_alert_once_take_over(
    pg_store: str, served: Served, tmp_path: Path
) -> None:
    """Two real `aifinops serve` processes on one PostgreSQL schema: one holds the jobs'
    lease (both say which); its budgets job fires the alert, sent once to the webhook; it is
    killed (SIGKILL) in the middle of a collect job; once its lease ran out (2 s) the other
    takes it and runs the jobs; the alert is neither recorded nor sent again; reads answer
    on both, the same."""
    import yaml

    from tests.test_budgets_serve import PRICES, SECRET, fleet

    now = datetime.now(UTC)
    slow = _Slow()
    served.routes["/hook"] = [(200, b"ok")]
    config = {
        **PRICES,
        "server": {"lease_seconds": 2},
        "alerts": {"retry_initial": "1s", "check_every": "1m"},
        "sources": [{"name": "dcgm-a", "kind": "dcgm", "url": slow.url, "interval": "1s"}],
        "budgets": [{
            "name": "ml-week", "limit": 50, "period": "week",
            "resetDay": (now - timedelta(days=1)).isoweekday(), "scope": {"teams": ["ml"]},
            "alerts": [{"thresholdPercent": 100, "channels": [{"type": "webhook", "config": {
                "url": served.url("/hook"), "secret_env": "HOOK_SECRET"}}]}],
        }],
    }  # fmt: skip
    cfg = tmp_path / "replicas.yaml"
    cfg.write_text(yaml.safe_dump(config))
    settings = load_settings(cfg, env={}, flags={"db": pg_store})
    with Service(settings) as svc:
        fleet(svc, now)
    env = {**os.environ, "HOOK_SECRET": SECRET, "AIFINOPS_DB": pg_store,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}  # fmt: skip
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for name in ("one", "two"):
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            with (tmp_path / f"{name}.log").open("wb") as log:  # the child keeps its own
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "aifinops", "--config", str(cfg), "serve",
                     "--port", str(port)], env=env, cwd=tmp_path, stdout=log,
                    stderr=subprocess.STDOUT)  # fmt: skip

        def get(name: str, path: str, **params: Any) -> Any:
            answer = httpx.get(urls[name] + path, params=params, timeout=90)
            answer.raise_for_status()
            return answer.json()

        def leases() -> dict[str, dict[str, Any]] | None:
            seen = {name: get(name, "/api/v1/jobs")["lease"] for name in urls}
            return seen if any(s["held"] for s in seen.values()) else None

        seen = _wait("a replica holding the lease", leases)
        holder = next(name for name, s in seen.items() if s["held"])
        other = next(name for name in urls if name != holder)
        # both say the same holder; exactly one is it
        assert [s["held"] for s in seen.values()].count(True) == 1
        assert seen[other]["holder"] == seen[holder]["this_replica"]
        assert get(holder, "/health")["replica"]["runs_jobs"] is True
        assert get(other, "/health")["replica"]["runs_jobs"] is False
        # the holder's budgets job fires the alert; it reaches the webhook once
        _wait("the alert delivered", lambda: served.bodies)
        event = json.loads(served.bodies[0][1])
        assert event["budget"] == "ml-week" and event["action"] == "fire"
        # reads answer on both, the same
        week = f"{(now - timedelta(days=2)).date()},{(now + timedelta(days=1)).date()}"
        sums = {n: get(n, "/api/v1/costs/summary", window=week, by="team") for n in urls}
        assert sums[holder]["rows"] == sums[other]["rows"] and sums[holder]["rows"]
        # the other runs no leased job
        jobs = {j["name"]: j for j in get(other, "/api/v1/jobs")["jobs"]}
        assert jobs["collect"]["runs"] == jobs["budgets"]["runs"] == jobs["alerts"]["runs"] == 0
        # the holder is killed in the middle of a collection pass
        slow.stalling.set()
        assert slow.stuck.wait(30), "the holder's collect job never scraped"
        killed_at = time.monotonic()
        procs[holder].send_signal(signal.SIGKILL)
        procs[holder].wait(10)
        # the other takes the lease over once it ran out, and runs the jobs
        took = _wait("the other replica holding the lease",
                     lambda: get(other, "/api/v1/jobs")["lease"]["held"], 30)  # fmt: skip
        assert took and time.monotonic() - killed_at >= 1.0  # not before the lease ran out

        def ran() -> bool:
            jobs = {j["name"]: j for j in get(other, "/api/v1/jobs")["jobs"]}
            return bool(jobs["collect"]["runs"] > 0 and jobs["budgets"]["runs"] > 0)

        _wait("the other replica's collect and budgets jobs", ran, 30)
        time.sleep(3)  # time for a second alert to go out, were there one
        assert len(served.bodies) == 1
        with Service(settings) as svc:
            assert svc.store.raw("SELECT count(*) FROM budget_alerts") == [(1,)]
            sent = svc.alert_deliveries()
        assert [(d["action"], d["attempts"], d["delivered_at"] is not None) for d in sent] == [
            ("fire", 1, True)
        ]
        assert get(other, "/health")["replica"]["runs_jobs"] is True
        assert (
            get(other, "/api/v1/costs/summary", window=week, by="team")["rows"]
            == (sums[holder]["rows"])
        )
        # stopped (SIGTERM), the other gives its lease up
        procs[other].send_signal(signal.SIGTERM)
        assert procs[other].wait(40) in (0, -signal.SIGTERM)  # uvicorn re-raises it when done
        with Service(settings) as svc:
            assert svc.store.raw("SELECT count(*) FROM leases") == [(0,)]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        slow.close()


@pytest.mark.engines
def test_two_checks_racing_record_and_queue_an_alert_once(
    make_service: Callable[..., Service],
) -> None:
    """Two replicas check the budgets on what they read, before either records: both see
    the alert newly over; the first to record fires it and queues its delivery, the second
    finds it fired and queues nothing."""
    from tests.test_budgets_serve import PRICES, fleet

    now = datetime.now(UTC)
    config = {**PRICES, "budgets": [{
        "name": "ml-week", "limit": 50, "period": "week",
        "resetDay": (now - timedelta(days=1)).isoweekday(), "scope": {"teams": ["ml"]},
        "alerts": [{"thresholdPercent": 100, "channels": [
            {"type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}]}],
    }]}  # fmt: skip
    svc = make_service(config, name="race.duckdb")
    fleet(svc, now)
    one, two = svc.check_budgets(record=False), svc.check_budgets(record=False)
    assert [e.action for e in one.events] == [e.action for e in two.events] == ["fire"]
    svc.record_check(one)
    svc.record_check(two)
    assert (one.queued, two.queued) == (1, 0)
    assert len(svc.budget_alerts()) == 1 and len(svc.alert_deliveries()) == 1
