"""What `/metrics` shows, read from the store at scrape time: costs per hour and per day by
node and GPU model, per team and day, idle GPU-hours, GPU efficiency, unit costs per model
(and per job and processing minute, by team and queue), waste, unpriced GPU-hours and each
source's freshness (outputs/metrics.py writes them in Prometheus' format). Windows end at
the newest sample in the store, so a store that is read after its data ends still shows
what it holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from aifinops.app.costs import CostQuery, Costs
from aifinops.app.prices import Prices
from aifinops.core.model import BUCKETS, IDLE, UNPRICED
from aifinops.core.windows import Window, align_up, from_ms, parse_instant

Sample = tuple[dict[str, str], float]


@dataclass
class MetricsSnapshot:
    """Each metric's samples: labels and value."""

    values: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        self.values.setdefault(name, []).append((labels, value))


class Metrics:
    def __init__(self, costs: Costs, prices: Prices, sources_status: Any,
                 findings: Any = None):  # fmt: skip
        self.costs, self.prices, self.sources_status = costs, prices, sources_status
        self.findings = findings  # app/findings.Findings: the open ones' savings

    def snapshot(self) -> MetricsSnapshot:
        out = MetricsSnapshot()
        extent = self.costs.data_extent()
        if extent is not None:
            end = align_up(from_ms(extent[1] + 1), timedelta(minutes=1))
            self._costs(out, end)
        for s in self.sources_status():
            labels = {"source": s["name"], "kind": s["kind"]}
            out.add("ai_finops_source_up", labels, 0.0 if s["stale"] else 1.0)
            if s["last_ok"]:
                ok = parse_instant(s["last_ok"]).timestamp()
                out.add("ai_finops_source_last_success_timestamp_seconds", labels, ok)
        if self.findings is not None:
            from aifinops.outputs.metrics import savings_series

            found = savings_series(self.findings.listed(status="open"),
                                   self.costs.ctx.settings.currency)  # fmt: skip
            for name, series in found.items():
                for labels, value in series:
                    out.add(name, labels, value)
        return out

    def _costs(self, out: MetricsSnapshot, end: Any) -> None:
        def report(hours: int, by: tuple[str, ...], **kw: Any) -> Any:
            win = Window(end - timedelta(hours=hours), end)
            text = f"{win.start.isoformat()},{win.end.isoformat()}"
            return self.costs.cost(CostQuery(window=text, by=by, **kw))

        hour = report(1, ("node", "gpu_model"), node_buckets=True)
        day = report(24, ("node", "gpu_model"), node_buckets=True)
        # a node's GPU cost: its workloads' and its idle GPUs' (bucket rows keep the node)
        model_of = {r.key["node"]: r.key["gpu_model"] for r in day.rows
                    if r.key["gpu_model"] not in BUCKETS}  # fmt: skip
        for rep, name in ((hour, "ai_finops_gpu_cost_per_hour"), (day, "ai_finops_gpu_cost_daily")):
            per: dict[str, float] = {}
            for r in rep.rows:
                per[r.key["node"]] = per.get(r.key["node"], 0.0) + float(r.gpu_cost)
            for node, value in sorted(per.items()):
                out.add(name, {"node": node, "gpu_model": model_of.get(node, "unknown")}, value)
        idle: dict[str, float] = {}
        unpriced = 0.0
        for r in day.rows:
            if r.key["gpu_model"] == IDLE:
                idle[r.key["node"]] = idle.get(r.key["node"], 0.0) + float(r.gpu_hours)
            if r.key["gpu_model"] == UNPRICED:
                unpriced += float(r.gpu_hours)
        # GPU time in seconds, Prometheus' base unit (promtool rejects `_hours`; the seed's
        # `ai_finops_idle_gpu_hours` is this divided by 3600)
        self._spot(out, day)
        for node, hours in sorted(idle.items()):
            out.add("ai_finops_idle_gpu_seconds", {"node": node}, hours * 3600)
        out.add("ai_finops_unpriced_gpu_seconds", {}, unpriced * 3600)
        teams = report(24, ("team",))
        for r in teams.rows:
            labels = {"team": r.key["team"]}
            out.add("ai_finops_team_cost_daily", labels, float(r.total_cost))
            if not any(r.is_bucket(b) for b in BUCKETS):
                if (eff := r.gpu_efficiency) is not None:
                    out.add("ai_finops_gpu_efficiency", labels, float(eff))
                out.add("ai_finops_waste_cost_daily", labels, float(r.waste_cost))
        models = report(24, ("model",), unit="tokens")
        for r in models.rows:
            if r.units is None:
                continue
            costs = r.units.costs(r.total_cost, r.gpu_hours)
            labels = {"model": r.key["model"]}
            if costs["cost_per_1m_tokens"] is not None:
                out.add("ai_finops_cost_per_1m_tokens", labels, costs["cost_per_1m_tokens"])
            if costs["cost_per_request"] is not None:
                out.add("ai_finops_cost_per_request", labels, costs["cost_per_request"])
        if self.costs.counts_jobs(Window(end - timedelta(hours=24), end)):
            self._jobs(out, report(24, ("team", "model"), unit="jobs"))

    def _jobs(self, out: MetricsSnapshot, queues: Any) -> None:
        """Cost per job and per processing minute by team and queue (a job counter's queue
        is where a model would be; Slurm jobs, which name none, are under
        `__unallocated__`)."""
        for r in queues.rows:
            if r.units is None:
                continue
            costs = r.units.costs(r.total_cost, r.gpu_hours)
            labels = {"queue": r.key["model"], "team": r.key["team"]}
            if costs["cost_per_job"] is not None:
                out.add("ai_finops_cost_per_job", labels, costs["cost_per_job"])
            if costs["cost_per_processing_minute"] is not None:
                out.add("ai_finops_cost_per_processing_minute", labels,
                        costs["cost_per_processing_minute"])  # fmt: skip

    def _spot(self, out: MetricsSnapshot, day: Any) -> None:
        """What each on-demand node would have cost less on spot in the newest 24 hours of
        data: (its hourly price - the catalog's spot price for its instance type, provider
        and region) x the hours it was present. Nodes without a spot price are left out."""
        hours: dict[str, Decimal] = {}
        for r in day.rows:
            hours[r.key["node"]] = hours.get(r.key["node"], Decimal(0)) + r.gpu_hours
        prices, nodes = self.prices.node_prices()
        price_of = {p.node_id: p for p in prices}
        for n in nodes.to_pylist():
            node, price = n["node_id"], price_of.get(n["node_id"])
            on_spot = (n["capacity_type"] or "").lower() in ("spot", "preemptible")
            if on_spot or price is None or not price.priced or not n["instance_type"]:
                continue
            offer = self.prices.catalog.find(n["instance_type"], n["provider"], n["region"],
                                             n["gpu_model"])  # fmt: skip
            if offer is None or offer.spot_hourly is None or node not in hours:
                continue
            count = n["gpu_count"] or 1
            hourly = price.gpu_hourly * count + price.cpu_hourly + price.ram_hourly
            saving = (hourly - offer.spot_hourly) * hours[node] / count
            if saving > 0:
                labels = {"node": node, "instance_type": n["instance_type"]}
                out.add("ai_finops_spot_savings_potential", labels, float(saving))
