"""`/metrics` in Prometheus' text format: a custom collector on a registry of its own that
reads a snapshot of the store at scrape time (cached for a few seconds, so a burst of
scrapes reads the store once), beside the server's own operational counters.

Labels are bounded: node, GPU model, team, model, source — never a pod per series."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

HELP = {
    "ai_finops_gpu_cost_per_hour": "GPU cost of each node in the newest hour of data",
    "ai_finops_gpu_cost_daily": "GPU cost of each node in the newest 24 hours of data",
    "ai_finops_team_cost_daily": "Allocated cost of each team in the newest 24 hours of data",
    "ai_finops_idle_gpu_seconds": "GPU time no workload held, per node, newest 24 hours",
    "ai_finops_unpriced_gpu_seconds": "GPU time on nodes without a price, newest 24 hours",
    "ai_finops_gpu_efficiency": "Busy GPU time over held GPU time, per team, newest 24 hours",
    "ai_finops_waste_cost_daily": "Cost of held but idle GPU time, per team, newest 24 hours",
    "ai_finops_cost_per_1m_tokens": "Cost per 1M tokens served, per model, newest 24 hours",
    "ai_finops_cost_per_request": "Cost per request served, per model, newest 24 hours",
    "ai_finops_cost_per_job": "Cost per completed job, per team and queue, newest 24 hours "
    "(job counters' completed jobs; Slurm jobs that ended)",
    "ai_finops_cost_per_processing_minute": "Cost per minute of job processing time, per team "
    "and queue, newest 24 hours",
    "ai_finops_spot_savings_potential": "What an on-demand node would have cost less on spot, "
    "newest 24 hours (catalog spot price)",
    "ai_finops_monthly_cost_projection": "This month's projected total spend per scope "
    "(spent so far + the forecast of the rest; forecast.metrics_by, team by default)",
    "ai_finops_monthly_cost_projection_high95": "The upper end of the 95 % interval of this "
    "month's projected total spend per scope",
    "ai_finops_budget_limit": "The budget's limit for its period",
    "ai_finops_budget_spend": "The budget's spend so far in its period",
    "ai_finops_budget_utilization_ratio": "The budget's spend so far over its limit",
    "ai_finops_budget_projected_spend": "The budget's projected spend for its whole period",
    "ai_finops_budget_forecast_utilization_ratio": "The budget's projected period spend over "
    "its limit",
    "ai_finops_budget_enforcement_active": "1 when the budget's throttle or block is in force",
    "ai_finops_recommendation_savings_monthly": "Monthly saving of the open recommendations, "
    "per rule and severity (overlapping findings on one workload are in each rule's sum)",
    "ai_finops_savings_potential_monthly": "Monthly saving of all open recommendations, "
    "overlapping findings on one workload counted once",
    "ai_finops_realised_savings_monthly": "Monthly saving of applied recommendations, "
    "measured before and after, per category and basis (estimate, confirmed by bill)",
    "ai_finops_source_up": "1 when the source's last success is within twice its interval",
    "ai_finops_source_last_success_timestamp_seconds": "When the source last ran without error",
}


def budget_series(statuses: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The budgets' gauges from the last budget check's statuses (one series per budget)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for s in statuses:
        labels = {"budget": s.budget.name, "period": s.budget.spec.period,
                  "currency": s.currency}  # fmt: skip
        limit = float(s.limit)
        for name, value in (
            ("ai_finops_budget_limit", limit),
            ("ai_finops_budget_spend", float(s.spend)),
            ("ai_finops_budget_utilization_ratio", float(s.spend) / limit),
            ("ai_finops_budget_projected_spend", float(s.projection.mean)),
            ("ai_finops_budget_forecast_utilization_ratio", float(s.projection.mean) / limit),
            ("ai_finops_budget_enforcement_active", 1.0 if s.enforcement_active else 0.0),
        ):
            out.setdefault(name, []).append((labels, value))
    return out


Series = dict[str, list[tuple[dict[str, str], float]]]


def savings_series(open_findings: Any, currency: str) -> Series:
    """The open recommendations' monthly savings: per rule and severity, and in all."""
    from decimal import Decimal

    from aifinops.core.recommend import total_saving

    sums: dict[tuple[str, str], Decimal] = {}
    for f in open_findings:
        key = (f["rule"], f["severity"])
        sums[key] = sums.get(key, Decimal(0)) + Decimal(str(f["monthly_saving"]))
    per_rule = [({"rule": r, "severity": s, "currency": currency}, float(v))
                for (r, s), v in sorted(sums.items())]  # fmt: skip
    total = [({"currency": currency}, float(total_saving(open_findings)))]
    return {"ai_finops_recommendation_savings_monthly": per_rule,
            "ai_finops_savings_potential_monthly": total}  # fmt: skip


def projection_series(rows: Any) -> Series:
    """This month's projected spend per scope, from the server's last forecast."""
    if not rows:
        return {}
    return {"ai_finops_monthly_cost_projection": [(labels, mean) for labels, mean, _ in rows],
            "ai_finops_monthly_cost_projection_high95": [(labels, high) for labels, _, high
                                                         in rows]}  # fmt: skip


def roi_series(doc: Any) -> Series:
    """Applied recommendations' realised monthly savings by category and basis (the
    server's last ROI measurement; nothing before it has one); overlapping applied
    findings on one workload counted once, as in the report."""
    if not doc:
        return {}
    sums: dict[tuple[str, str], float] = {}
    for m in doc["applied"]:
        if m["realised_monthly"] is not None and m.get("counted", True):
            key = (m["category"], m["basis"])
            sums[key] = sums.get(key, 0.0) + float(m["realised_monthly"])
    return {"ai_finops_realised_savings_monthly": [
        ({"category": c, "basis": b, "currency": doc["currency"]}, v)
        for (c, b), v in sorted(sums.items())]}  # fmt: skip


class StoreCollector(Collector):
    """Gauges from `snapshot()` (name -> [(labels, value)]), cached for `ttl` seconds."""

    def __init__(self, snapshot: Callable[[], dict[str, list[tuple[dict[str, str], float]]]],
                 ttl: float = 10.0, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.snapshot, self.ttl, self.clock = snapshot, ttl, clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, list[tuple[dict[str, str], float]]]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._cached[0] >= self.ttl:
                self._cached = (now, self.snapshot())
            values = self._cached[1]
        for name, samples in values.items():
            labels = sorted({k for lab, _ in samples for k in lab})
            family = GaugeMetricFamily(name, HELP.get(name, name), labels=labels)
            for lab, value in samples:
                family.add_metric([lab.get(k, "") for k in labels], value)
            yield family


class ServerMetrics:
    """The registry `/metrics` writes: the store's gauges and the server's own counters."""

    def __init__(self, snapshot: Callable[[], Any], ttl: float = 10.0):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(snapshot, ttl))
        self.query_errors = Counter(
            "ai_finops_prometheus_query_errors", "Failed Prometheus queries of collect",
            registry=self.registry,
        )  # fmt: skip
        self.query_seconds = Histogram(
            "ai_finops_query_duration_seconds", "Time to answer an API request, by route",
            ["route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.ingest_rows = Counter(
            "ai_finops_ingest_rows", "Rows stored by the server's ingests and collect runs",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self.ingest_failures = Counter(
            "ai_finops_ingest_failures", "Ingests and source runs that failed", ["kind"],
            registry=self.registry,
        )  # fmt: skip

    def text(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition in the format `accept` asks for (Prometheus' Accept header), and
        its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
