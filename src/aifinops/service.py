"""The one façade that the CLI (and the API) call. Each method hands its call to the part
of the service with that one concern (`app/`): ingest, prices, costs, bills, collect."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from aifinops.app.access import Access
from aifinops.app.anomalies import Anomalies, AnomalyCheck, AnomalyReport
from aifinops.app.bills import Bills
from aifinops.app.budgets import Applied, Budgets, CheckResult
from aifinops.app.collect import Collect, SourceRun
from aifinops.app.context import AppContext
from aifinops.app.costs import CostQuery, Costs
from aifinops.app.findings import Findings
from aifinops.app.forecast import Forecasts
from aifinops.app.ingest import Ingest, IngestResult
from aifinops.app.lease import Lease, Leases
from aifinops.app.prices import Prices
from aifinops.app.recommend import Recommend
from aifinops.app.report import Report
from aifinops.app.retention import Retention
from aifinops.app.roi import Roi
from aifinops.app.summary import Summary
from aifinops.config import Settings
from aifinops.core.access import Caller
from aifinops.core.model import CostReport, IdlePolicy, SharedGpuPolicy
from aifinops.core.pricing import Catalog, NodePrice, NodeRule
from aifinops.core.reconcile import ReconciledReport
from aifinops.core.windows import parse_instant
from aifinops.errors import UsageError
from aifinops.sources.base import SourceConfig
from aifinops.store.db import Store

Progress = Callable[[str, int, int], None]
BILL_KINDS = ("cur", "focus", "azure", "oci")
# what an upload of each kind may say beside the file (`ingest_file`)
BILL_OPTIONS = {"replace", "pad_short_rows", "dataset", "currency"}
UPLOAD_OPTIONS: dict[str, set[str]] = {
    "nvidia-smi": {"host", "timezone"}, "kubernetes": set(), "dcgm": {"at", "interval", "host"},
    "slurm": {"timezone"}, "inference": {"server", "at", "pod", "model"}, "opencost": set(),
    "agent": set(),
}  # fmt: skip


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
        read_only: bool = False,
    ):
        """`read_only`: a service for reads, which opens the store read-only (see
        `Store.for_reads`); its methods that write fail on the store."""
        self.settings = settings
        self.ctx = AppContext(settings, clock, sleep, read_only=read_only)
        self.ingest = Ingest(self.ctx)
        self.prices = Prices(self.ctx)
        self.costs = Costs(self.ctx, self.prices)
        self.bills = Bills(self.ingest, self.costs)
        self.collector = Collect(self.ingest)
        self.access = Access(self.ctx)
        self.leases = Leases(self.ctx)
        self.budgets = Budgets(self.ctx, self.costs, self.bills)
        recommend = Recommend(self.ctx, self.costs, self.prices)
        self.findings = Findings(self.ctx, self.costs, recommend)
        self.roi_app = Roi(self.ctx, self.costs, recommend, self.bills, self.findings)
        self.anomalies_app = Anomalies(self.ctx, self.costs, self.budgets)
        self.forecasts = Forecasts(self.ctx, self.costs)
        self.summary_app = Summary(self.ctx, self.costs, self.forecasts, self.budgets,
                                   self.findings, self.anomalies_app, self.roi_app)  # fmt: skip
        self.report_app = Report(self.ctx, self.costs, self.bills, self.summary_app)
        self.retention = Retention(self.ctx)

    # -- plumbing -----------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.ctx.store

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest: each kind's config, read through its registered source ------------------
    def _read(
        self,
        config: SourceConfig,
        source: Any = None,
        at: str | None = None,
        progress: Progress | None = None,
    ) -> list[IngestResult]:
        from aifinops.sources import registry

        at_ms = int(parse_instant(at, what="--at").timestamp() * 1000) if at else None
        rc = self.ingest.read_context(at_ms=at_ms, progress=progress)
        return self.ingest.run(source or registry.kind(config.kind)(), config, rc)

    def ingest_nvidia_smi(
        self,
        path: Path,
        owners_file: Path | None = None,
        host: str | None = None,
        timezone: str = "UTC",
        owners: Sequence[Any] | None = None,
    ) -> IngestResult:
        from aifinops.sources.telemetry.kinds import NvidiaSmiConfig, NvidiaSmiSource

        config = NvidiaSmiConfig(path=str(path), owners=str(owners_file) if owners_file else None,
                                 host=host, timezone=timezone)  # fmt: skip
        return self._read(config, NvidiaSmiSource(owners or ()))[0]

    def ingest_kubernetes(self, paths: Iterable[Path]) -> list[IngestResult]:
        from aifinops.sources.inventory.kinds import KubernetesConfig

        return [r for p in paths for r in self._read(KubernetesConfig(path=str(p)))]

    def ingest_kubernetes_api(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        watch_seconds: float = 0.0,
        api: Any = None,
    ) -> IngestResult:
        from aifinops.sources.inventory.kinds import KubernetesConfig, KubernetesSource

        config = KubernetesConfig(kubeconfig=kubeconfig, context=context, in_cluster=in_cluster,
                                  watch=watch_seconds)  # fmt: skip
        return self._read(config, KubernetesSource(api))[0]

    def ingest_dcgm(
        self,
        sources: Sequence[str],
        *,
        at: str | None = None,
        interval: str = "30s",
        host: str | None = None,
    ) -> list[IngestResult]:
        """dcgm-exporter scrapes (files or URLs); a scrape without sample timestamps is taken
        at `at`, else the file's modification time, else now; each covers `interval`."""
        from aifinops.sources.telemetry.kinds import DcgmConfig

        configs = [DcgmConfig(url=src, interval=interval, host=host) for src in sources]
        return [r for c in configs for r in self._read(c, at=at)]

    def ingest_prometheus(
        self,
        url: str,
        *,
        window: str,
        step: str = "1m",
        timeout: float = 30.0,
        max_points: int | None = None,
        part_steps: int = 240,
        progress: Progress | None = None,
    ) -> IngestResult:
        from aifinops.sources.telemetry.prometheus_pull import PrometheusConfig

        limits = {"max_points": max_points} if max_points else {}
        config = PrometheusConfig(url=url, window=window, step=step, timeout=timeout,
                                  part_steps=part_steps, **limits)  # fmt: skip
        return self._read(config, progress=progress)[0]

    def ingest_slurm(self, paths: Iterable[Path], timezone: str = "UTC") -> list[IngestResult]:
        from aifinops.sources.inventory.kinds import SlurmConfig

        return [r for p in paths for r in self._read(SlurmConfig(path=str(p), timezone=timezone))]

    def ingest_inference(
        self,
        sources: Sequence[str],
        *,
        server: str | None = None,
        at: str | None = None,
        pod: str | None = None,
        model: str | None = None,
    ) -> list[IngestResult]:
        from aifinops.sources.serving.kinds import InferenceConfig

        configs = [InferenceConfig(url=s, server=server, pod=pod, model=model) for s in sources]
        return [r for c in configs for r in self._read(c, at=at)]

    def ingest_opencost(self, sources: Sequence[str]) -> list[IngestResult]:
        from aifinops.sources.inventory.kinds import OpenCostConfig

        return [r for s in sources for r in self._read(OpenCostConfig(url=s))]

    def ingest_agent_segment(self, path: Path) -> IngestResult:
        """One closed spool segment of the node agent (the same segment twice counts once)."""
        from aifinops.sources.telemetry.kinds import AgentConfig

        return self._read(AgentConfig(path=str(path)))[0]

    def ingest_file(self, kind: str, path: Path, **options: Any) -> list[IngestResult]:
        """One uploaded input of a kind `aifinops ingest` knows (the server's uploads):
        `options` are that kind's (`at`, `pod`, `replace`...). An nvidia-smi bundle is a
        directory already unpacked."""
        allowed = UPLOAD_OPTIONS.get(kind, BILL_OPTIONS if kind in BILL_KINDS else set())
        if unknown := sorted(set(options) - allowed):
            takes = ", ".join(sorted(allowed)) or "none"
            raise UsageError(f"{kind} takes no option {', '.join(unknown)}", where="query",
                             hint=f"{kind} takes: {takes}")  # fmt: skip
        if kind in BILL_KINDS:
            return self.ingest_bills(kind, [path], replace=bool(options.pop("replace", False)),
                                     options=options or None)  # fmt: skip
        readers: dict[str, Callable[..., Any]] = {
            "nvidia-smi": lambda: [self.ingest_nvidia_smi(path, **options)],
            "kubernetes": lambda: self.ingest_kubernetes([path]),
            "dcgm": lambda: self.ingest_dcgm([str(path)], **options),
            "slurm": lambda: self.ingest_slurm([path], **options),
            "inference": lambda: self.ingest_inference([str(path)], **options),
            "opencost": lambda: self.ingest_opencost([str(path)]),
            "agent": lambda: [self.ingest_agent_segment(path)],
        }
        if kind not in readers:
            raise UsageError(f"unknown ingest kind {kind!r}", where="kind",
                             hint=", ".join(sorted([*readers, *BILL_KINDS])))  # fmt: skip
        return list(readers[kind]())

    def ingest_bills(
        self,
        kind: str,
        paths: Iterable[Path],
        *,
        options: dict[str, Any] | None = None,
        progress: Progress | None = None,
        replace: bool = False,
    ) -> list[IngestResult]:
        return self.bills.ingest_files(kind, paths, options=options, progress=progress,
                                       replace=replace)  # fmt: skip

    def ingest_focus(self, paths: Iterable[Path], progress: Progress | None = None) -> list[Any]:
        return self.bills.ingest_files("focus", paths, progress=progress)

    def load_fleet(self, fleet: Any, seed: int, progress: Progress | None = None) -> int:
        """Write a generated fleet (the demo's, the benchmarks') into the store."""
        from aifinops.demo.fleet import usage_batches

        return self.ingest.load_generated(fleet, usage_batches(fleet, seed), progress)

    def agent(self, **options: Any) -> Any:
        """The node agent: sample, resolve owners, spool, and ship segments here (or POST
        them to `server`)."""
        return self.collector.agent(ship_here=self.ingest_agent_segment, **options)

    # -- collect --------------------------------------------------------------------------
    def collect(self, **options: Any) -> list[SourceRun]:
        return self.collector.run(**options)

    def sources_due(self) -> list[str]:
        return self.collector.due()

    def collect_due(self) -> list[SourceRun]:
        """One pass of collection: the configured sources whose interval has passed."""
        return self.collector.run_due()[0]

    def sources_status(self) -> list[dict[str, Any]]:
        return self.collector.status()

    # -- prices ---------------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        return self.prices.catalog

    @property
    def price_notes(self) -> list[str]:
        return self.prices.notes

    def refresh_prices(self, providers: Sequence[str] | None = None) -> list[IngestResult]:
        return self.prices.refresh(providers)

    def node_prices(
        self, bill_rules: tuple[NodeRule, ...] = ()
    ) -> tuple[list[NodePrice], pa.Table]:
        return self.prices.node_prices(bill_rules)

    def price_offers(self, **filters: Any) -> list[dict[str, Any]]:
        return self.prices.offers(**filters)

    def missing_prices(self) -> list[dict[str, Any]]:
        return self.prices.missing()

    def energy(self, *, window: str | None = None, last: str | None = None) -> list[dict[str, Any]]:
        return self.prices.energy(self.costs.resolve_window(window, last))

    # -- the server's tokens and audit log -----------------------------------------------
    def create_token(self, name: str, role: str) -> str:
        return self.access.create(name, role)

    def revoke_token(self, name: str) -> None:
        self.access.revoke(name)

    def tokens(self) -> list[dict[str, Any]]:
        return self.access.listed()

    def live_tokens(self) -> list[tuple[str, str, str]]:
        return self.access.live()

    def audit(self, caller: Caller, action: str, target: str | None, status: int,
              detail: str | None = None) -> None:  # fmt: skip
        self.access.audit(caller, action, target, status, detail)

    def audit_log(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self.access.audit_log(limit, offset)

    # -- costs ----------------------------------------------------------------------------
    def metrics_snapshot(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """What `/metrics` shows, read from the store now (app/metrics.py)."""
        from aifinops.app.metrics import Metrics

        return Metrics(self.costs, self.prices, self.collector.status,
                       self.findings).snapshot().values  # fmt: skip

    def gpu_utilization(self, lookback_ms: int = 15 * 60_000) -> list[dict[str, Any]]:
        return self.costs.utilization(lookback_ms)

    def utilization_grid(self, window: Any, step: timedelta) -> dict[str, Any]:
        """Each GPU's busy share per step of a window (a `Window`): the heatmap's cells."""
        return self.costs.utilization_grid(window, step)

    def data_extent(self) -> tuple[int, int] | None:
        return self.costs.data_extent()

    def resolve_window(self, window: str | None, last: str | None) -> Any:
        return self.costs.resolve_window(window, last)

    def cost(
        self,
        *,
        window: str | None = None,
        last: str | None = None,
        step: str | None = None,
        by: Sequence[str] = ("team",),
        idle: IdlePolicy | str | None = None,
        shared_gpu: SharedGpuPolicy | str | None = None,
        team: str | None = None,
        unit: str | None = None,
        source: str = "telemetry",
        node_buckets: bool = False,
        bill_rules: tuple[NodeRule, ...] = (),
    ) -> CostReport:
        return self.costs.cost(CostQuery(window, last, step, tuple(by), idle, shared_gpu, team,
                                         unit, source, node_buckets, bill_rules))  # fmt: skip

    # -- budgets ----------------------------------------------------------------------------
    def budget_list(self) -> list[tuple[Any, str]]:
        return self.budgets.all()

    def budget(self, name: str) -> tuple[Any, str]:
        return self.budgets.get(name)

    def apply_budgets(self, docs: Iterable[Any], where: str = "budget") -> list[Applied]:
        return self.budgets.apply(docs, where)

    def delete_budget(self, name: str) -> None:
        self.budgets.delete(name)

    def budget_statuses(self, at: datetime | None = None,
                        names: Sequence[str] | None = None) -> list[Any]:  # fmt: skip
        return self.budgets.statuses(at, names)

    def check_budgets(self, at: datetime | None = None, *, dry_run: bool = False,
                      record: bool = True) -> CheckResult:  # fmt: skip
        return self.budgets.check(at, dry_run=dry_run, record=record)

    def record_check(self, result: CheckResult) -> None:
        self.budgets.record(result)

    def due_alerts(self, now: datetime | None = None) -> list[dict[str, Any]]:
        return self.budgets.due(now)

    def claim_alerts(self, due: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The due deliveries this sender may send (claimed in the store: sent once)."""
        return self.budgets.claim(due)

    def send_alerts(self, due: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
        """Send due deliveries over the network (no store use)."""
        return self.budgets.send(due)

    def record_alerts_sent(self, outcomes: list[tuple[dict[str, Any], str | None]]) -> None:
        self.budgets.record_sent(outcomes)

    def budget_alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        return self.budgets.alerts(name)

    def alert_deliveries(self) -> list[dict[str, Any]]:
        return self.budgets.deliveries()

    def admission_state(self, result: CheckResult) -> Any:
        """The admission webhook's gates, from a check's statuses."""
        return self.budgets.admission_state(result.statuses, result.at)

    # -- replicas: the lease that lets one `serve` at a time run the jobs -----------------
    def take_lease(self, name: str, me: str, seconds: float, *, force: bool = False) -> Lease:
        """Take or renew the lease `name` for `seconds` (`force`: from any holder); who
        holds it after."""
        return self.leases.take(name, me, seconds, force=force)

    def release_lease(self, name: str, me: str) -> bool:
        return self.leases.release(name, me)

    def lease(self, name: str, me: str) -> Lease:
        return self.leases.get(name, me)

    # -- recommendations -------------------------------------------------------------------
    def optimize(self, *, window: str | None = None, last: str | None = None,
                 rules: list[str] | None = None) -> Any:  # fmt: skip
        """Run the recommendation rules over a window; their findings stored."""
        return self.findings.run(window, last, rules)

    def finding(self, fid: str) -> dict[str, Any]:
        """One stored finding, whatever its status, with its history."""
        return self.findings.get(fid)

    def keep_findings(self, result: Any) -> Any:
        """Store a run's findings worked out on a read-only store (what was new, what
        was resolved)."""
        return self.findings.keep(result)

    def recommendations(self, **filters: Any) -> list[dict[str, Any]]:
        return self.findings.listed(**filters)

    def set_finding_status(self, fid: str, status: str, reason: str | None = None,
                           actor: str | None = None) -> dict[str, Any]:  # fmt: skip
        return self.findings.set_status(fid, status, reason, actor)

    def roi(self, *, investment: Decimal | None = None, monthly_cost: Decimal | None = None,
            record: bool = False) -> Any:  # fmt: skip
        """What applied findings saved (measured before/after, by allocation or by bill),
        by category, with the payback of an investment and open findings' potential."""
        return self.roi_app.report(investment=investment, monthly_cost=monthly_cost,
                                   record=record)  # fmt: skip

    def record_roi(self, report: Any) -> int:
        """Write each applied finding's first complete measurement to its history."""
        return self.roi_app.record(report.measures)

    # -- forecasts --------------------------------------------------------------------------
    def forecast(self, **options: Any) -> Any:
        """Spend per scope to the end of the month or a horizon, with 80 % and 95 %
        intervals (the method chosen per series by backtest)."""
        return self.forecasts.forecast(**options)

    def forecast_backtest(self, **options: Any) -> dict[str, Any]:
        """The month-end forecast's error at days 7, 14 and 21 of each complete month of
        the store's history, against the run-rate, and its intervals' coverage."""
        return self.forecasts.backtest(**options)

    def projection_series(self) -> list[tuple[dict[str, str], float, float]]:
        return self.forecasts.projection_series(self.settings.forecast.metrics_by)

    # -- anomalies ------------------------------------------------------------------------
    def anomalies(self, *, window: str | None = None, last: str | None = None,
                  by: str | None = None, metric: str = "spend") -> AnomalyReport:  # fmt: skip
        return self.anomalies_app.find(window=window, last=last, by=by, metric=metric)

    def check_anomalies(self, at: datetime | None = None) -> AnomalyCheck:
        return self.anomalies_app.check(at)

    def record_anomalies(self, result: AnomalyCheck) -> int:
        return self.anomalies_app.record(result)

    # -- the summary and the report -------------------------------------------------------
    def summary(self, *, window: str | None = None, last: str | None = None,
                by: Sequence[str] = ("team",)) -> dict[str, Any]:  # fmt: skip
        """A window at a glance (the report's and the dashboard overview's one dict): spend
        against the window before, idle, waste, rows by `by`, spend per day, the month-end
        forecast, budgets, recommendations, anomalies, ROI."""
        return self.summary_app.summary(window, last, by)

    def report(self, paths: Path | Sequence[Path], *, fmt: str | None = None,
               window: str | None = None, last: str | None = None,
               by: Sequence[str] = ("team",)) -> list[dict[str, Any]]:  # fmt: skip
        """Write the report for finance to each path (HTML, PDF, Markdown or CSV, from its
        suffix unless `fmt`): the summary, cost by `by` and by model with charts, and the
        month's chargeback per team. Returns where each went, its format and size."""
        targets = [paths] if isinstance(paths, Path) else list(paths)
        return self.report_app.write(targets, fmt=fmt, window=window, last=last, by=by)

    # -- the store itself -------------------------------------------------------------------
    def repair_store(self, *, dry_run: bool = False) -> list[Any]:
        """Find (and unless `dry_run` fix) what an older version let into the store."""
        from aifinops.sources.bills.engine import MAX_AMOUNT
        from aifinops.store.repair import repair

        return repair(self.store, max_amount=Decimal(MAX_AMOUNT), dry_run=dry_run)

    @staticmethod
    def copy_store(
        source: str, target: str, progress: Callable[[str, int], None] | None = None
    ) -> list[Any]:
        """Copy a whole store into a new one (DuckDB to PostgreSQL, or back)."""
        from aifinops.app import stores

        return stores.copy(source, target, progress)

    def store_stats(self) -> dict[str, Any]:
        """Rows, size and span per table, and what retention would remove now."""
        return self.retention.stats()

    def compact_store(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Apply retention and merge the roll-ups' rows (`dry_run`: count, change nothing)."""
        return self.retention.compact(dry_run=dry_run)

    # -- bills ----------------------------------------------------------------------------
    def bills_summary(self, **options: Any) -> list[dict[str, Any]]:
        return self.bills.summary(**options)

    def tags_report(self, **options: Any) -> dict[str, Any]:
        return self.bills.tags_report(**options)

    def reconcile(self, **options: Any) -> ReconciledReport:
        return self.bills.reconcile(**options)

    def export_focus(self, path: Path, **options: Any) -> dict[str, Any]:
        return self.bills.export_focus(path, **options)

    def export_chargeback(self, path: Path | None, **options: Any) -> list[dict[str, Any]]:
        return self.bills.export_chargeback(path, **options)


@dataclass(frozen=True)
class SourceKind:
    """A kind of source, as `aifinops sources list` shows it."""

    name: str
    mode: str
    needs: tuple[str, ...]
    default_interval: str
    description: str


def source_kinds() -> list[SourceKind]:
    """The kinds of source aifinops reads (the registry, for the faces)."""
    from aifinops.sources import registry

    return [SourceKind(d["kind"], d["mode"], d["needs"], d["default_interval"], d["description"])
            for d in registry.describe()]  # fmt: skip


__all__ = ["IngestResult", "Service", "SourceKind", "SourceRun", "source_kinds"]
