"""The server (`aifinops serve`): the real FastAPI app served by uvicorn on 127.0.0.1, asked
over HTTP. Expected values are worked by hand from the facts each test loads.

The fleet: node n1, two L4 GPUs at $4.00/GPU-h, one hour [T0, T0 + 1h) of one-minute
samples. GPU-0 is held the whole hour by search-ns/a (team search), busy half the time;
GPU-1 by ads-ns/b (team ads) for the first 30 minutes, busy a quarter of the time, then by
nobody. So: search 1 GPU-h $4.00, ads 0.5 GPU-h $2.00, __idle__ 0.5 GPU-h $2.00."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aifinops.api.app import create_app
from aifinops.api.windows import parse_window
from aifinops.config import load_settings
from aifinops.core.windows import from_ms
from aifinops.errors import UsageError
from tests.conftest import MIN, T0, free_port, load_facts, need_binary, sample, window

PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
WINDOW = window(1)


def fleet(svc: Any) -> None:
    node = {"node_id": "n1", "gpu_model": "NVIDIA L4", "gpu_count": 2, "source": "test",
            "util_signal": "test-signal"}  # fmt: skip
    pods = [
        {"workload_id": f"{ns}/{name}", "kind": "pod", "namespace": ns, "name": name,
         "node_id": "n1", "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
         "labels": {"team": team}, "source": "test"}
        for ns, name, team in (("search-ns", "a", "search"), ("ads-ns", "b", "ads"))
    ]  # fmt: skip
    samples = []
    for t in range(T0, T0 + 60 * MIN, MIN):
        samples += sample(t, "n1", "GPU-0", [("search-ns/a", 1, 1, 0.5)])
        held = ("ads-ns/b", 1, 1, 0.25) if t < T0 + 30 * MIN else (None, 1, 1, 0.0)
        samples += sample(t, "n1", "GPU-1", [held])
    load_facts(svc, [node], pods, samples)


class Running:
    def __init__(self, url: str, app: Any, server: uvicorn.Server, thread: threading.Thread):
        self.url, self.app, self.server, self.thread = url, app, server, thread

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers=_auth(token), timeout=30)

    def post(self, path: str, body: bytes, token: str | None = None, **params: Any) -> Any:
        return httpx.post(self.url + path, content=body, params=params, headers=_auth(token),
                          timeout=60)  # fmt: skip


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """`serve(db, config)`: the app on a free loopback port, stopped after the test."""
    started: list[Running] = []

    def start(db: Path, config: dict[str, Any] | None = None, jobs: bool = False) -> Running:
        import yaml

        cfg = tmp_path / "serve.yaml"
        cfg.write_text(yaml.safe_dump(config or {}))
        app = create_app(load_settings(cfg, env={}, flags={"db": str(db)}), jobs=jobs)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        running = Running(f"http://127.0.0.1:{port}", app, server, thread)
        started.append(running)
        return running

    yield start
    for r in started:
        r.server.should_exit = True
        r.thread.join(30)


@pytest.fixture
def fleet_db(make_service: Any, tmp_path: Path) -> Path:
    svc = make_service(PRICES, name="fleet.duckdb")
    fleet(svc)
    svc.close()
    return tmp_path / "fleet.duckdb"


def test_seed_paths(serve: Any, fleet_db: Path) -> None:
    api = serve(fleet_db, PRICES)
    assert api.get("/health").json()["status"] == "ok"
    assert api.get("/ready").status_code == 200  # no source configured: nothing is stale
    summary = api.get("/api/v1/costs/summary", window=WINDOW).json()
    teams = {r["key"]["team"]: r["total_cost"] for r in summary["rows"]}
    assert teams == {"search": 4.0, "ads": 2.0, "__idle__": 2.0}
    assert summary["asset_cost"] == 8.0 and summary["currency"] == "USD"
    team = api.get("/api/v1/costs/team/ads", window=WINDOW).json()
    assert [(r["key"]["namespace"], r["key"]["workload"], r["gpu_hours"], r["total_cost"])
            for r in team["rows"]] == [("ads-ns", "ads-ns/b", 0.5, 2.0)]  # fmt: skip
    recs = api.get("/api/v1/recommendations", severity="high")
    assert recs.status_code == 200 and recs.json()["recommendations"] == []
    # the newest sample of each GPU (T0 + 59 min): GPU-0 busy half of it, GPU-1 held by none
    util = api.get("/api/v1/gpu/utilization").json()["gpus"]
    at = from_ms(T0 + 59 * MIN).isoformat().replace("+00:00", "Z")
    assert [(g["node"], g["gpu"], g["at"], g["sample_seconds"], g["utilization"], g["holders"])
            for g in util] == [("n1", "GPU-0", at, 60.0, 0.5, ["search-ns/a"]),
                               ("n1", "GPU-1", at, 60.0, 0.0, [])]  # fmt: skip


def test_cost_route_pages_and_csv(serve: Any, fleet_db: Path) -> None:
    api = serve(fleet_db, PRICES)
    page = api.get("/api/v1/cost", by="team", window=WINDOW, limit=1, offset=1).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    assert [r["key"]["team"] for r in page["items"]] == ["ads"]
    csv = api.get("/api/v1/cost", by="team", window=WINDOW, format="csv")
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith("start,end,team,gpu_hours,gpu_cost")
    assert sorted(line.split(",")[2] for line in lines[1:]) == ["__idle__", "ads", "search"]


def test_opencost_allocation(serve: Any, fleet_db: Path) -> None:
    api = serve(fleet_db, PRICES)
    got = api.get("/api/v1/allocation", window=WINDOW, aggregate="namespace", step="30m").json()
    assert got["code"] == 200 and len(got["data"]) == 2
    first, second = got["data"]
    # first half hour: both pods held a GPU; second: search and the idle GPU-1
    assert set(first) == {"search-ns", "ads-ns"} and set(second) == {"search-ns", "__idle__"}
    s = first["search-ns"]
    assert (s["gpuHours"], s["gpuCost"], s["gpuRequestAverage"], s["gpuUsageAverage"],
            s["minutes"], s["totalCost"]) == (0.5, 2.0, 1.0, 0.5, 30.0, 2.0)  # fmt: skip
    a = first["ads-ns"]
    assert (a["gpuHours"], a["gpuRequestAverage"], a["gpuUsageAverage"]) == (0.5, 1.0, 0.25)
    assert s["properties"] == {"namespace": "search-ns"}
    assert s["window"] == {"start": "2026-11-23T00:00:00Z", "end": "2026-11-23T00:30:00Z"}
    assert second["__idle__"]["gpuCost"] == 2.0
    no_idle = api.get("/api/v1/allocation", window=WINDOW, aggregate="namespace", step="30m",
                      idle="false").json()  # fmt: skip
    assert set(no_idle["data"][1]) == {"search-ns"}
    # shareIdle: the idle GPU's $2 goes to search, the only holder on n1 in that step
    shared = api.get("/api/v1/allocation", window=WINDOW, aggregate="namespace", step="30m",
                     shareIdle="true").json()  # fmt: skip
    assert shared["data"][1]["search-ns"]["totalCost"] == 4.0
    whole = api.get("/api/v1/allocation", window=WINDOW, aggregate="label:team").json()
    assert {k: v["gpuCost"] for k, v in whole["data"][0].items()} == {
        "search": 4.0, "ads": 2.0, "__idle__": 2.0}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("today", "2026-11-25T00:00:00", "2026-11-25T10:16:00"),
        ("yesterday", "2026-11-24T00:00:00", "2026-11-25T00:00:00"),
        ("week", "2026-11-23T00:00:00", "2026-11-25T11:00:00"),  # Wednesday: from Monday
        ("lastweek", "2026-11-16T00:00:00", "2026-11-23T00:00:00"),
        ("month", "2026-11-01T00:00:00", "2026-11-25T11:00:00"),
        ("lastmonth", "2026-10-01T00:00:00", "2026-11-01T00:00:00"),
        ("7d", "2026-11-18T11:00:00", "2026-11-25T11:00:00"),  # a day or more: to the hour
        ("90m", "2026-11-25T08:46:00", "2026-11-25T10:16:00"),
        ("1586822400,1586908800", "2020-04-14T00:00:00", "2020-04-15T00:00:00"),
        ("2026-11-01T00:00:00Z,2026-11-08T00:00:00Z", "2026-11-01T00:00:00",
         "2026-11-08T00:00:00"),
    ],
)  # fmt: skip
def test_opencost_windows(text: str, start: str, end: str) -> None:
    now = datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC)  # a Wednesday
    got = parse_window(text, now)
    assert (got.start, got.end) == (
        datetime.fromisoformat(start).replace(tzinfo=UTC),
        datetime.fromisoformat(end).replace(tzinfo=UTC),
    )


def test_bad_windows() -> None:
    now = datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC)
    for text in ("fortnight", "0d", "7x", "2026-11-08,2026-11-01", ","):
        with pytest.raises(UsageError):
            parse_window(text, now)


def test_errors_are_one_envelope(serve: Any, fleet_db: Path) -> None:
    api = serve(fleet_db, PRICES)
    bad = api.get("/api/v1/cost", window="fortnight")
    assert bad.status_code == 400
    err = bad.json()["error"]
    assert err["type"] == "UsageError" and err["where"] == "window" and "7d" in err["hint"]
    by = api.get("/api/v1/cost", by="colour", window=WINDOW).json()["error"]
    assert (by["where"], by["message"]) == ("--by", "cannot group by 'colour'")
    missing = api.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"
    invalid = api.get("/api/v1/cost", limit=0)
    assert invalid.status_code == 400 and invalid.json()["error"]["where"] == "query.limit"
    agg = api.get("/api/v1/allocation", aggregate="label:colour").json()["error"]
    assert agg["where"] == "aggregate" and "label:KEY" in agg["hint"]


def test_tokens_roles_and_audit(serve: Any, fleet_db: Path, make_service: Any,
                                tmp_path: Path) -> None:  # fmt: skip
    scrape = b'vllm:prompt_tokens_total{model_name="m"} 5\n'
    # no token exists: reads are open, writes refused with how to make one
    api = serve(fleet_db, PRICES)
    assert api.get("/api/v1/costs/summary", window=WINDOW).status_code == 200
    refused = api.post("/api/v1/ingest/inference", scrape, pod="ml/p")
    assert refused.status_code == 403
    assert "aifinops token create" in refused.json()["error"]["hint"]
    api.server.should_exit = True
    api.thread.join(30)
    # tokens made as the CLI makes them; the store keeps hashes only
    from aifinops.service import Service

    with Service(load_settings(None, env={}, flags={"db": str(fleet_db)})) as svc:
        admin = svc.create_token("ops", "admin")
        viewer = svc.create_token("grafana", "viewer")
        stored = svc.store.raw("SELECT token_hash FROM api_tokens")
    assert admin.startswith("afo_") and all(admin not in str(r) for r in stored)
    api = serve(fleet_db, PRICES)
    assert api.get("/api/v1/costs/summary", window=WINDOW).status_code == 401
    assert api.get("/api/v1/costs/summary", viewer, window=WINDOW).status_code == 200
    wrong = api.get("/api/v1/costs/summary", admin[:-1] + "x", window=WINDOW)
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert api.post("/api/v1/ingest/inference", scrape, viewer, pod="ml/p").status_code == 403
    done = api.post("/api/v1/ingest/inference", scrape, admin, pod="ml/p",
                    at="2026-11-23T00:10:00Z")  # fmt: skip
    assert done.status_code == 200 and done.json()["results"][0]["status"] == "loaded"
    # a failed write: our message, nothing stored, and the attempt audited
    bad = api.post("/api/v1/ingest/cur", b"\x00\x01 not a bill", admin, filename="cur.csv")
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "InputError"
    odd = api.post("/api/v1/ingest/kubernetes", b"{}", admin, colour="blue")
    assert odd.status_code == 400 and "takes no option colour" in odd.json()["error"]["message"]
    log = api.get("/api/v1/audit", admin).json()["entries"]
    assert [(e["actor"], e["role"], e["action"], e["status"]) for e in log] == [
        ("ops", "admin", "ingest inference", 200),
        ("ops", "admin", "ingest cur", 422),
        ("ops", "admin", "ingest kubernetes", 400),
    ][::-1]  # fmt: skip
    assert api.get("/api/v1/audit", viewer).status_code == 403
    # the health probe and /metrics need no token
    assert api.get("/health").status_code == 200 and api.get("/metrics").status_code == 200


def test_identify_compares_every_hash() -> None:
    from aifinops.core.access import identify, token_hash

    live = [("a", "viewer", token_hash("afo_one")), ("b", "admin", token_hash("afo_two"))]
    assert identify("afo_two", live).name == "b"  # type: ignore[union-attr]
    assert identify("afo_three", live) is None and identify(None, live) is None


def test_metrics(serve: Any, fleet_db: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    api = serve(fleet_db, PRICES)
    api.get("/health")  # timed: the scrape shows it
    scraped = api.get("/metrics")
    assert scraped.headers["content-type"].startswith("text/plain")
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    # the newest 24 hours and the newest hour of data both hold the whole fleet hour
    l4 = (("gpu_model", "NVIDIA L4"), ("node", "n1"))
    assert got[("ai_finops_gpu_cost_daily", l4)] == 8.0
    assert got[("ai_finops_gpu_cost_per_hour", l4)] == 8.0
    assert got[("ai_finops_idle_gpu_seconds", (("node", "n1"),))] == 1800.0  # 0.5 GPU-h
    assert got[("ai_finops_unpriced_gpu_seconds", ())] == 0.0
    teams = {k[1][0][1]: v for k, v in got.items() if k[0] == "ai_finops_team_cost_daily"}
    assert teams == {"search": 4.0, "ads": 2.0, "__idle__": 2.0}
    eff = {k[1][0][1]: v for k, v in got.items() if k[0] == "ai_finops_gpu_efficiency"}
    assert eff == {"search": 0.5, "ads": 0.25}
    assert got[("ai_finops_query_duration_seconds_count", (("route", "/health"),))] == 1.0
    need_binary("promtool")
    import subprocess

    check = subprocess.run(["promtool", "check", "metrics"], input=scraped.text,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_agent_pushes_through_a_restarted_server(
    serve: Any, agent_service: Any, run_agent: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    # the reference: the whole replay stored by the agent directly
    direct = agent_service(name="direct.duckdb")
    (tmp_path / "direct").mkdir()
    run_agent(direct, tmp_path / "direct")
    expected = direct.store.count("gpu_usage")
    # the server's store knows the pods as the direct one does
    served = agent_service(name="served.duckdb")
    token = served.create_token("agent-h100", "admin")
    served.close()
    monkeypatch.setenv("AIFINOPS_TOKEN", token)
    api = serve(tmp_path / "served.duckdb", {"prices": {"gpu_models": {"H100": 4.0}}})
    local = agent_service(name="local.duckdb")  # the agent's own service: stores nothing
    work = tmp_path / "agent"
    work.mkdir()
    run_agent(local, work, ticks=120, server=api.url)
    # the server dies; the agent goes on, keeping what it cannot send in its spool
    api.server.should_exit = True
    api.thread.join(30)
    stats = run_agent(local, work, server=api.url)
    assert stats.failures and list((work / "spool").glob("*.jsonl"))
    # back again: the spool is sent, what was sent twice is stored once
    api = serve(tmp_path / "served.duckdb", {"prices": {"gpu_models": {"H100": 4.0}}})
    run_agent(local, work, ticks=1, server=api.url)
    assert not list((work / "spool").glob("*.jsonl"))
    assert local.store.count("gpu_usage") == 0
    api.server.should_exit = True
    api.thread.join(30)
    from aifinops.service import Service

    with Service(load_settings(None, env={}, flags={"db": str(tmp_path / "served.duckdb")}),
                 read_only=True) as check:  # fmt: skip
        assert check.store.count("gpu_usage") == expected
        log = check.audit_log(limit=1000)
    assert {e["actor"] for e in log} == {"agent-h100"}


def test_jobs_ready_and_cli_reads_beside_serve(serve: Any, fleet_db: Path, cli: Any,
                                               tmp_path: Path) -> None:  # fmt: skip
    scrape = Path(__file__).parent / "data" / "metrics" / "dcgm_metrics.txt"
    dead = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    config = {**PRICES, "sources": [
        {"name": "dcgm-file", "kind": "dcgm", "url": str(scrape), "interval": "1h"},
        {"name": "dcgm-dead", "kind": "dcgm", "url": dead, "interval": "1h"},
    ]}  # fmt: skip
    api = serve(fleet_db, config, jobs=True)
    deadline = time.monotonic() + 30

    def jobs() -> dict[str, Any]:
        return {j["name"]: j for j in api.get("/api/v1/jobs").json()["jobs"]}

    while not jobs()["collect"]["runs"]:
        assert time.monotonic() < deadline, "collect never ran"
        time.sleep(0.2)
    job = jobs()["collect"]
    assert set(jobs()) == {"collect", "budgets", "alerts", "recommendations", "anomalies",
                           "forecast", "compact", "gates", "metrics"}  # fmt: skip
    assert job["name"] == "collect" and job["runs"] == 1 and job["last_error"] is None
    assert "2 source run(s)" in job["last_result"] and "failed: dcgm-dead" in job["last_result"]
    ready = api.get("/ready")
    assert ready.status_code == 503 and ready.json()["stale"] == ["dcgm-dead"]
    # the CLI reads the store while the server holds it
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices: {gpu_models: {L4: 4.00}}\n")
    out = cli("--db", str(fleet_db), "--config", str(prices), "cost", "--by", "team",
              "--window", WINDOW, "--format", "json", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert '"total_cost": 8' in out.stdout


def test_schemathesis_against_the_live_app(serve: Any, fleet_db: Path, tmp_path: Path) -> None:
    """Generated requests for every route of the live app's OpenAPI, as an admin: no 5xx,
    no response that breaks its schema, every error in the envelope."""
    import subprocess
    import sys

    from aifinops.service import Service

    with Service(load_settings(None, env={}, flags={"db": str(fleet_db)})) as svc:
        token = svc.create_token("fuzz", "admin")
    api = serve(fleet_db, PRICES)
    st = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(st), "run", api.url + "/openapi.json", "--checks",
         "not_a_server_error,response_schema_conformance,status_code_conformance",
         "--max-examples", "8", "--seed", "1", "--phases", "examples,coverage,fuzzing",
         "--max-time", "150", "--request-timeout", "60",
         "-H", f"Authorization: Bearer {token}", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_jobs_stop_after_the_run_in_progress() -> None:
    from aifinops.api.jobs import Job, Scheduler

    began, ended = threading.Event(), threading.Event()
    runs: list[int] = []

    def slow() -> str:
        began.set()
        time.sleep(0.5)
        runs.append(1)
        ended.set()
        return "done"

    def idle() -> None:  # nothing to do: not a run
        return None

    def broken() -> str:
        raise RuntimeError("source down")

    jobs = Scheduler([Job("slow", 0.01, slow), Job("idle", 0.01, idle),
                      Job("broken", 0.01, broken)], tick_s=0.01)  # fmt: skip
    jobs.start()
    assert began.wait(10)
    assert jobs.stop(timeout=10)  # waits for the run in progress, starts no other
    assert ended.is_set() and len(runs) == 1
    status = {j["name"]: j for j in jobs.status()}
    assert status["slow"]["runs"] == 1 and status["slow"]["last_result"] == "done"
    assert status["idle"]["runs"] == 0 and status["idle"]["last_start"] is None
    assert status["broken"]["failures"] == status["broken"]["runs"]
    assert status["broken"]["last_error"] in (None, "RuntimeError: source down")


def test_lists_page_and_csv(serve: Any, fleet_db: Path) -> None:
    api = serve(fleet_db, PRICES)
    whole = api.get("/api/v1/prices", gpu="H100", provider="aws").json()
    assert whole["total"] == len(whole["items"]) > 2 and whole["offset"] == 0
    page = api.get("/api/v1/prices", gpu="H100", provider="aws", limit=2, offset=1).json()
    assert page["items"] == whole["items"][1:3] and page["total"] == whole["total"]
    csv = api.get("/api/v1/prices", gpu="H100", provider="aws", format="csv").text.splitlines()
    header = csv[0].split(",")
    assert len(csv) == whole["total"] + 1 and "instance_type" in header
    column = header.index("instance_type")
    assert [line.split(",")[column] for line in csv[1:]] == [
        r["instance_type"] for r in whole["items"]]  # fmt: skip
    sources = api.get("/api/v1/sources/status").json()
    assert (sources["items"], sources["total"]) == ([], 0)  # none configured


def test_cli_reads_through_the_server(serve: Any, fleet_db: Path, tmp_path: Path) -> None:
    """`aifinops --server URL cost ...` answers from the server: the same report as from the
    store, without loading the query engine."""
    import json
    import subprocess
    import sys

    api = serve(fleet_db, PRICES)
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices: {gpu_models: {L4: 4.00}}\n")
    args = ["cost", "--by", "team,namespace", "--window", WINDOW, "--format", "json"]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-X", "importtime", "-m", "aifinops", *extra,
                               *args], capture_output=True, text=True, cwd=tmp_path,
                              timeout=120)  # fmt: skip

    remote = run("--server", api.url)
    local = run("--db", str(fleet_db), "--config", str(prices))
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr[-2000:]
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert json.loads(remote.stdout)["total_cost"] == 8.0
    imported = {line.split("|")[-1].strip() for line in remote.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "duckdb" not in imported and "ibis" not in imported
    assert "duckdb" in {line.split("|")[-1].strip() for line in local.stderr.splitlines()
                        if line.startswith("import time:")}  # fmt: skip
    # a server that is not there: one line, what and where
    gone = subprocess.run([sys.executable, "-m", "aifinops", "--server",
                           f"http://127.0.0.1:{free_port()}", *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert gone.returncode == 4 and "cannot reach the server" in gone.stderr


def test_spot_savings_metric(serve: Any, make_service: Any, tmp_path: Path) -> None:
    """An on-demand AWS g5.xlarge (no region) for one hour: the bundled catalog's region-less
    row prices it at $1.01/h on demand and $0.30/h on spot, so spot would have saved $0.71;
    the spot node beside it saves nothing, and a node without a spot price is left out."""
    from prometheus_client.parser import text_string_to_metric_families

    svc = make_service(name="spot.duckdb")
    nodes = [
        {"node_id": n, "provider": "aws", "instance_type": "g5.xlarge", "gpu_model": "A10G",
         "gpu_count": 1, "capacity_type": cap, "source": "test"}
        for n, cap in (("od-1", "on-demand"), ("spot-1", "spot"))
    ]  # fmt: skip
    samples = [
        r
        for t in range(T0, T0 + 60 * MIN, MIN)
        for node in ("od-1", "spot-1")
        for r in sample(t, node, "GPU-0", [(None, 1, 1, 0.0)])
    ]
    load_facts(svc, nodes, [], samples)
    svc.close()
    api = serve(tmp_path / "spot.duckdb")
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(api.get("/metrics").text)
        for s in family.samples
        if s.name == "ai_finops_spot_savings_potential"
    }
    assert got.keys() == {("ai_finops_spot_savings_potential",
                           (("instance_type", "g5.xlarge"), ("node", "od-1")))}  # fmt: skip
    assert abs(next(iter(got.values())) - 0.71) < 1e-9


def test_identify_runs_every_compare(monkeypatch: Any) -> None:
    """The token check compares with every stored hash, in constant time each (no early
    exit when the first one matches)."""
    import hmac

    from aifinops.core import access

    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", counting)
    live = [(f"t{i}", "viewer", access.token_hash(f"afo_{i}")) for i in range(5)]
    assert access.identify("afo_0", live) == access.Caller("t0", "viewer")
    assert len(calls) == 5
    calls.clear()
    assert access.identify("afo_nobody", live) is None and len(calls) == 5


def test_on_the_demo_store(serve: Any, tmp_path: Path) -> None:
    """The seed paths, the OpenCost shape and unit costs on `aifinops demo`'s store: the
    totals add up to the fleet's asset cost, and the H100 capture's model server served
    385 requests (read off its event log)."""
    from aifinops.demo.run import run_demo

    demo = run_demo(str(tmp_path / "demo.duckdb"), days=1)
    import yaml

    api = serve(Path(demo.db), yaml.safe_load(Path(demo.config).read_text()))
    span = f"{demo.window.start.isoformat()},{demo.window.end.isoformat()}"
    summary = api.get("/api/v1/costs/summary", window=span).json()
    assert abs(sum(r["total_cost"] for r in summary["rows"]) - summary["asset_cost"]) < 1e-4
    assert summary["asset_cost"] == float(round(demo.by_team.asset_cost, 6))
    alloc = api.get("/api/v1/allocation", window=span, aggregate="namespace").json()
    (entries,) = alloc["data"]
    fields = {"gpuHours", "gpuCost", "gpuRequestAverage", "gpuUsageAverage", "totalCost"}
    assert all(fields <= set(e) for e in entries.values())
    assert abs(sum(e["totalCost"] for e in entries.values()) - summary["asset_cost"]) < 1e-4
    capture = "2026-11-23T10:00:00Z,2026-11-23T11:00:00Z"  # the H100 capture's hour
    units = api.get("/api/v1/cost", window=capture, by="model", unit="tokens").json()["items"]
    medium = next(r for r in units if r["key"]["model"] == "gpt2-medium-randinit")
    assert medium["units"]["requests"] == 385
    util = api.get("/api/v1/gpu/utilization").json()
    assert util["count"] > 0 and all(0 <= g["utilization"] <= 1 for g in util["gpus"])
    assert api.get("/api/v1/prices/compare", gpu="H100").json()["total"] > 0


def test_reconciled_cost(serve: Any, fleet_db: Path) -> None:
    """`cost --reconciled` through the API: no bill covers the fleet, so every team stays at
    its list cost ($4.00 search, $2.00 ads, $2.00 idle), all of it unbilled."""
    api = serve(fleet_db, PRICES)
    got = api.get("/api/v1/cost", by="team", window=WINDOW, reconciled="true").json()
    rows = {r["key"]["team"]: r for r in got["items"]}
    assert {t: r["list_cost"] for t, r in rows.items()} == {
        "search": 4.0, "ads": 2.0, "__idle__": 2.0}  # fmt: skip
    assert all(r["billed_cost"] == r["unbilled_cost"] == r["list_cost"] for r in rows.values())
    assert "no bills ingested" in got["notes"][0]
    refused = api.get("/api/v1/cost", by="team", window=WINDOW, reconciled="true", step="1h")
    assert refused.status_code == 400 and "cannot go with reconciled" in refused.text
