"""What `aifinops serve` holds between requests: the store, answers keyed on the store's
data version, the periodic jobs.

DuckDB lets one process write a file, or several read it. The server keeps one read-only
connection for its reads, so the CLI's read commands run beside it; a write (a collection
pass, an upload, a token) closes it, writes through a read-write connection that lives only
for that write, and bumps the data version. One lock serialises the store's use (a DuckDB
connection is not shared between threads); answers already computed for the current data
version are served from memory without it.

Replicas (decision 0021): several servers may share one PostgreSQL store; the jobs that
write run on the one holding the jobs' lease (`JobLease`), the others serve the API and
keep their own memory (the admission gates, /metrics) from reads."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from aifinops.api.jobs import Job, JobLease, Scheduler
from aifinops.config import Settings
from aifinops.core.windows import align_up, from_ms, parse_duration
from aifinops.outputs.metrics import ServerMetrics, budget_series, projection_series, roi_series
from aifinops.service import Service

T = TypeVar("T")

LEASE = "jobs"  # the lease's name in the store
# where the store is a database server, not a file, another replica's writes leave no trace
# here: an answer is kept at most this long (seconds)
SHARED_STORE_CACHE_S = 10.0


class Server:
    def __init__(
        self,
        settings: Settings,
        *,
        jobs: bool = True,
        cache_size: int = 512,
        metrics_ttl: float = 10.0,
    ):
        self.settings = settings
        self.jobs = jobs
        self.lock = threading.RLock()
        self.generation = 0
        self.cache_size = cache_size
        self._cache: OrderedDict[Any, tuple[Any, Any]] = OrderedDict()
        self._reader: Service | None = None
        # a DuckDB file's size and time after this server's own lease writes, and the ones
        # they stand for (a lease renewed is not a change of the data)
        self._alias: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        # this replica, as the lease names its holder
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # on PostgreSQL the lease has a connection of its own, beside the store lock, so
        # it is renewed while a job writes
        self._lease_lock = threading.Lock()
        self._lease_service: Service | None = None
        with Service(settings) as svc:  # create or migrate the store once, read-write
            svc.store  # noqa: B018
        self.budget_statuses: list[Any] = []
        self.roi: dict[str, Any] | None = None  # the recommendations job's last measurement
        self._recommended_at: float | None = None
        self.projection: list[Any] = []  # the forecast job's monthly projection per scope
        self._forecast_at: tuple[float, tuple[int, ...]] | None = None
        self._anomalies_at: float | None = None  # the anomalies job's last run
        # the compact job's last run: the first is one `retention.every` after the start
        # (a server started for a moment deletes nothing)
        self._compacted_at = time.monotonic()
        # what else is worked out after each change of the data (the dashboard's pages)
        self.warmers: list[Callable[[tuple[int, ...]], str | None]] = []
        self.metrics = ServerMetrics(
            lambda: {**self.cached(("metrics",), lambda svc: svc.metrics_snapshot()),
                     **budget_series(self.budget_statuses), **roi_series(self.roi),
                     **projection_series(self.projection)},
            metrics_ttl,
        )  # fmt: skip
        sources = settings.sources if jobs else []
        self._warmed: tuple[int, ...] | None = None
        self._checked: tuple[int, ...] | None = None
        self._checked_at = 0.0
        # the same for a replica without the lease that follows the budgets (`gates`): apart,
        # so that one taking the lease over checks and records at once
        self._followed: tuple[tuple[int, ...] | None, float] = (None, 0.0)
        from aifinops.api.admission import Gatekeeper

        self.gatekeeper = Gatekeeper(settings.admission, settings.attribution.rules())
        budget_jobs = [Job("budgets", 1.0, self._check_budgets), Job("alerts", 5.0, self._deliver),
                       Job("recommendations", 10.0, self._recommend),
                       Job("forecast", 10.0, self._forecast)]  # fmt: skip
        budget_jobs.append(Job("anomalies", 10.0, self._check_anomalies))
        budget_jobs.append(Job("compact", 60.0, self._compact))
        # on a replica without the lease: the budgets' statuses for its own admission gates
        budget_jobs.append(Job("gates", 1.0, self._follow_budgets, leased=False))
        listed = (([Job("collect", 1.0, self._collect)] if sources else [])
                  + (budget_jobs if jobs else [])
                  + [Job("metrics", 1.0, self._warm_metrics, leased=False)])  # fmt: skip
        # on a DuckDB file, which one server at a time serves, the lease is always taken:
        # a holder that is not this process is one that died (or a restart's predecessor)
        ttl, force = settings.server.lease_seconds, not self._shared
        self.lease = (
            JobLease(self.replica, ttl, lambda: self._leasing(
                lambda svc: svc.take_lease(LEASE, self.replica, ttl, force=force).held),
                lambda: self._leasing(lambda svc: svc.release_lease(LEASE, self.replica)))
            if any(j.leased for j in listed) else None
        )  # fmt: skip
        self.scheduler = Scheduler(listed, lease=self.lease)

    # -- the store --------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[Service]:
        """The read-only service, under the store lock."""
        with self.lock:
            if self._reader is None:
                self._reader = Service(self.settings, read_only=True)
            yield self._reader

    @contextmanager
    def writing(self) -> Iterator[Service]:
        """A read-write service for one write, under the store lock; the data version
        moves on when it is done, whether the write succeeded or not (a failed write is a
        rolled-back transaction, but a source's failure is recorded)."""
        with self.lock:
            self._close_reader()
            svc = Service(self.settings)
            try:
                yield svc
            finally:
                svc.close()
                self.generation += 1
                self._cache.clear()

    def version(self) -> tuple[int, ...]:
        """The data version: this server's writes, and the store files' sizes and times
        (another process may have written while the server held no connection); on a
        store that is no file (PostgreSQL), where other replicas write, a time slot."""
        files = self._files()
        if self._alias is not None and files == self._alias[0]:
            files = self._alias[1]
        if self._shared:
            files += (int(time.monotonic() // SHARED_STORE_CACHE_S),)
        return (self.generation, *files)

    @property
    def _shared(self) -> bool:
        """Whether the store is a database server (PostgreSQL) that replicas share."""
        return "://" in str(self.settings.db)

    def _files(self) -> tuple[int, ...]:
        out: list[int] = []
        for path in (Path(self.settings.db), Path(str(self.settings.db) + ".wal")):
            try:
                st = os.stat(path)
                out += [st.st_mtime_ns, st.st_size]
            except OSError:
                out += [0, 0]
        return tuple(out)

    def _leasing(self, act: Callable[[Service], T]) -> T:
        """A write of the jobs' lease (taken, renewed, released): under the store lock
        through a read-write service, as any write, but no change of the data, so the
        answers kept stay: the DuckDB file's size and time after it stand for the ones
        before. (A write by another process in the instant between the two is missed
        until the next change; on DuckDB a second server is rare, and none can write
        while this one holds the file.) On PostgreSQL, a connection of its own, without
        the store lock."""
        if self._shared:
            with self._lease_lock:
                if self._lease_service is None:
                    self._lease_service = Service(self.settings)
                try:
                    return act(self._lease_service)
                except Exception:  # the connection may be broken: a new one next time
                    with contextlib.suppress(Exception):
                        self._lease_service.close()
                    self._lease_service = None
                    raise
        with self.lock:
            before = self._files()
            if self._alias is not None and before == self._alias[0]:
                before = self._alias[1]
            self._close_reader()
            svc = Service(self.settings)
            try:
                return act(svc)
            finally:
                svc.close()
                after = self._files()
                if after != before:
                    self._alias = (after, before)

    def lease_status(self) -> dict[str, Any]:
        """Who holds the jobs' lease (from the store: any replica says the same) and
        whether this replica does (never, where it runs no leased job: `--no-jobs`)."""
        if self.lease is None:
            return {"this_replica": self.replica, "held": False, "holder": None,
                    "running_jobs": False}  # fmt: skip
        if self._shared:  # the lease's own connection: not kept waiting by a job's write
            seen = self._leasing(lambda svc: svc.lease(LEASE, self.replica).to_dict())
        else:
            with self.reading() as svc:
                seen = svc.lease(LEASE, self.replica).to_dict()
        return {**seen, **self.lease.status()}

    def cached(self, key: Any, compute: Callable[[Service], T]) -> T:
        """`compute(service)`'s answer for `key` at the current data version."""
        version = self.version()
        with self.lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == version:
                self._cache.move_to_end(key)
                return hit[1]  # type: ignore[no-any-return]
            with self.reading() as svc:
                value = compute(svc)
            self._cache[key] = (version, value)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return value

    def has_tokens(self) -> bool:
        return bool(self.cached(("tokens",), lambda svc: svc.live_tokens()))

    def close(self) -> None:
        self.scheduler.stop()
        with self.lock:
            self._close_reader()
        with self._lease_lock:
            if self._lease_service is not None:
                self._lease_service.close()
                self._lease_service = None

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- jobs -------------------------------------------------------------------------
    def _warm_metrics(self) -> str | None:
        """After each change of the data version (and at start), work out what `/metrics`
        shows before a scrape asks, so a scrape is answered from memory; then each
        `warmers` entry (the dashboard's pages) decides what it works out for the version."""
        version = self.version()
        done = []
        if version != self._warmed:
            values = self.cached(("metrics",), lambda svc: svc.metrics_snapshot())
            self._warmed = version
            done.append(f"{sum(len(v) for v in values.values())} series")
        done += [text for warm in self.warmers if (text := warm(version))]
        return "; ".join(done) or None

    def refresh_gates(self, result: Any) -> None:
        """Hand a budget check's statuses to the admission webhook (its in-memory state)
        and to /metrics."""
        with self.reading() as svc:
            state = svc.admission_state(result)
        self.gatekeeper.refresh(state)
        self.budget_statuses = list(result.statuses)

    def _check_budgets(self) -> str | None:
        """After every change of the data (a collection pass, an upload) and at least each
        `alerts.check_every`: every budget's status; what changed (an alert fired or
        resolved, a limit first exceeded) is written; the webhook's gates are refreshed."""
        if not self._budgets_due(self._checked, self._checked_at):
            return None
        with self.reading() as svc:
            result = svc.check_budgets(record=False)
        if result.pending:
            with self.writing() as svc:
                svc.record_check(result)
        self.refresh_gates(result)
        self._checked, self._checked_at = self.version(), time.monotonic()
        fired = [f"{e.action} {e.key}" for e in result.events]
        return f"{len(result.statuses)} budget(s)" + (f"; {', '.join(fired)}" if fired else "")

    def _budgets_due(self, version: tuple[int, ...] | None, at: float) -> bool:
        """Whether a check done at `at` (monotonic) on the data `version` is to be done
        again: the data changed, or `alerts.check_every` passed."""
        every = parse_duration(self.settings.alerts.check_every,
                               what="alerts.check_every").total_seconds()  # fmt: skip
        return self.version() != version or time.monotonic() - at >= every

    def _follow_budgets(self) -> str | None:
        """On a replica without the jobs' lease (the holder's `budgets` job checks and
        records): as often as that job, the budgets' statuses from a check that records
        nothing, so this replica's admission webhook and /metrics gate and show the same."""
        if self.lease is None or self.lease.held or not self._budgets_due(*self._followed):
            return None
        with self.reading() as svc:
            result = svc.check_budgets(record=False)
        self.refresh_gates(result)
        self._followed = (self.version(), time.monotonic())
        return f"{len(result.statuses)} budget(s) followed"

    def _recommend(self) -> str | None:
        """Each `roi.every` (and at start, once there is data): the rules over the last
        `roi.last`, worked out on the read-only store, then their findings kept (a
        dismissed one stays dismissed) and applied findings measured; /metrics shows the
        realised savings."""
        import time

        every = parse_duration(self.settings.roi.every, what="roi.every").total_seconds()
        if self._recommended_at is not None and time.monotonic() - self._recommended_at < every:
            return None
        with self.reading() as svc:
            extent = svc.data_extent()
        if extent is None:
            return None
        self._recommended_at = time.monotonic()
        # up to the newest sample (as `optimize` without a window), not the clock: a
        # collector that stopped leaves the last week it saw, not an empty one
        end = align_up(from_ms(extent[1] + 1), timedelta(hours=1))
        start = end - parse_duration(self.settings.roi.last, what="roi.last")
        with self.reading() as svc:
            result = svc.optimize(window=f"{start.isoformat()},{end.isoformat()}")
        with self.writing() as svc:
            kept = svc.keep_findings(result)
        with self.reading() as svc:
            report = svc.roi()
        if any(m.complete and m.measured for m in report.measures):
            with self.writing() as svc:
                svc.record_roi(report)
        self.roi = report.to_dict()
        return (f"{len(result.findings)} finding(s), {len(kept.new)} new, "
                f"{len(kept.resolved)} resolved; "
                f"{report.realised_monthly:.2f} {report.currency} a month realised")  # fmt: skip

    def _compact(self) -> str | None:
        """Each `retention.every`: retention applied to the samples and their roll-ups
        (`aifinops store compact`)."""
        every = parse_duration(self.settings.retention.every, what="retention.every")
        if time.monotonic() - self._compacted_at < every.total_seconds():
            return None
        self._compacted_at = time.monotonic()
        with self.writing() as svc:
            done = svc.compact_store()
        return f"{done['removed']} row(s) past retention removed, {done['merged']} merged"

    def _check_anomalies(self) -> str | None:
        """Each `anomalies.every` (and at start, once there is data), where channels are
        named: the anomalies of the last `anomalies.last` up to the newest sample, found on
        the read-only store; each new one is recorded and queued once for the `alerts`
        job to send."""
        import time

        cfg = self.settings.anomalies
        every = parse_duration(cfg.every, what="anomalies.every").total_seconds()
        if not cfg.channels or (self._anomalies_at is not None
                                and time.monotonic() - self._anomalies_at < every):  # fmt: skip
            return None
        with self.reading() as svc:
            if svc.data_extent() is None:
                return None
            self._anomalies_at = time.monotonic()
            result = svc.check_anomalies()
        if result.events:
            with self.writing() as svc:
                svc.record_anomalies(result)
        found = sum(len(r.anomalies) for r in result.reports)
        return f"{found} anomal{'y' if found == 1 else 'ies'}, {len(result.events)} new, " \
               f"{result.queued} alert(s) queued"  # fmt: skip

    def _forecast(self) -> str | None:
        """Each `forecast.every` (and at start, once there is data, and after the data
        change, at most every minute): this month's projected spend per scope, for
        `ai_finops_monthly_cost_projection` on /metrics."""
        import time

        every = parse_duration(self.settings.forecast.every, what="forecast.every")
        version = self.version()
        now = time.monotonic()
        if self._forecast_at is not None:
            at, seen = self._forecast_at
            if now - at < 60 or (seen == version and now - at < every.total_seconds()):
                return None
        with self.reading() as svc:
            if svc.data_extent() is None:
                return None
            rows = svc.projection_series()
        self._forecast_at = (now, version)
        self.projection = rows
        total = sum(mean for _, mean, _ in rows)
        return f"{len(rows)} scope(s) projected, {total:,.2f} this month in all"

    def _deliver(self) -> str | None:
        """Send the alert deliveries that are due (off the store lock: a slow channel
        never holds reads up), then record each outcome; a failed one is retried later.
        Each is claimed in the store first, so one sender sends it (decision 0021)."""
        with self.reading() as svc:
            due = svc.due_alerts()
            if not due:
                return None
        with self.writing() as svc:
            due = svc.claim_alerts(due)
            sender = svc.send_alerts
        if not due:
            return None
        outcomes = sender(due)
        with self.writing() as svc:
            svc.record_alerts_sent(outcomes)
        failed = sum(1 for _, e in outcomes if e is not None)
        return f"{len(outcomes) - failed} delivered" + (f", {failed} failed" if failed else "")

    def _collect(self) -> str | None:
        """Each second: the sources that are due, if any, collected in one write."""
        with self.reading() as svc:
            if not svc.sources_due():
                return None
        with self.writing() as svc:
            runs = svc.collect_due()
        for r in runs:
            self.metrics.ingest_rows.labels(r.kind).inc(r.rows)
            if r.status == "failed":
                self.metrics.ingest_failures.labels(r.kind).inc()
                if r.kind == "prometheus":
                    self.metrics.query_errors.inc()
        failed = [r.name for r in runs if r.status == "failed"]
        text = f"{len(runs)} source run(s), {sum(r.rows for r in runs)} rows"
        return text + (f"; failed: {', '.join(failed)}" if failed else "")
