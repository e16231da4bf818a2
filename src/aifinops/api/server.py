"""What `aifinops serve` holds between requests: the store, answers keyed on the store's
data version, the periodic jobs.

DuckDB lets one process write a file, or several read it. The server keeps one read-only
connection for its reads, so the CLI's read commands run beside it; a write (a collection
pass, an upload, a token) closes it, writes through a read-write connection that lives only
for that write, and bumps the data version. One lock serialises the store's use (a DuckDB
connection is not shared between threads); answers already computed for the current data
version are served from memory without it."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from aifinops.api.jobs import Job, Scheduler
from aifinops.config import Settings
from aifinops.core.windows import align_up, from_ms, parse_duration
from aifinops.outputs.metrics import ServerMetrics, budget_series, projection_series, roi_series
from aifinops.service import Service

T = TypeVar("T")


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
        with Service(settings) as svc:  # create or migrate the store once, read-write
            svc.store  # noqa: B018
        self.budget_statuses: list[Any] = []
        self.roi: dict[str, Any] | None = None  # the recommendations job's last measurement
        self._recommended_at: float | None = None
        self.projection: list[Any] = []  # the forecast job's monthly projection per scope
        self._forecast_at: tuple[float, tuple[int, ...]] | None = None
        self._anomalies_at: float | None = None  # the anomalies job's last run
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
        from aifinops.api.admission import Gatekeeper

        self.gatekeeper = Gatekeeper(settings.admission, settings.attribution.rules())
        budget_jobs = [Job("budgets", 1.0, self._check_budgets), Job("alerts", 5.0, self._deliver),
                       Job("recommendations", 10.0, self._recommend),
                       Job("forecast", 10.0, self._forecast)]  # fmt: skip
        budget_jobs.append(Job("anomalies", 10.0, self._check_anomalies))
        self.scheduler = Scheduler(
            ([Job("collect", 1.0, self._collect)] if sources else [])
            + (budget_jobs if jobs else [])
            + [Job("metrics", 1.0, self._warm_metrics)]
        )

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
        (another process may have written while the server held no connection)."""
        out = [self.generation]
        for path in (Path(self.settings.db), Path(str(self.settings.db) + ".wal")):
            try:
                st = os.stat(path)
                out += [st.st_mtime_ns, st.st_size]
            except OSError:
                out += [0, 0]
        return tuple(out)

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
        import time

        version = self.version()
        every = parse_duration(self.settings.alerts.check_every,
                               what="alerts.check_every").total_seconds()  # fmt: skip
        if version == self._checked and time.monotonic() - self._checked_at < every:
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
        never holds reads up), then record each outcome; a failed one is retried later."""
        with self.reading() as svc:
            due = svc.due_alerts()
            if not due:
                return None
            sender = svc.send_alerts
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
