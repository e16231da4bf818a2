"""Recommendations: the facts the rules read (`Facts`), gathered from the engine's hourly
use of each GPU holding, the allocation (what each one cost, its team, what no team
carries), the nodes and the price catalog.

A holding is a pod, or the pods of one controller (store/recommend.py, step 3): `gpus` is
what one replica asks for, `replicas` the most of its pods at once, its hours the whole
holding's (GPU-time of all its pods; the peak counted over all of them at once).
`cost_per_hour` is its allocation in the window (GPU, CPU and RAM; idle kept apart) over
its held hours (`GpuHolding.held_hours`: each hour, held GPUs / GPUs asked for, at most 1),
so that cost_per_hour x held_hours is its cost in the window; one replica held an hour
costs cost_per_hour x held GPU-hours / gpus, which for R replicas held throughout is the
whole holding's cost per hour (R x one replica's). Memory not read (no `fb_used_mib` for
its GPUs: nvidia-smi logs bring none) is NaN, in an hour and in `gpu_memory_mib` of a
model nobody knows."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aifinops.app.context import AppContext
from aifinops.app.costs import CostQuery, Costs
from aifinops.app.prices import Prices
from aifinops.core.gpus import gpu_memory_mib, mig_profile
from aifinops.core.model import BUCKETS, UNALLOCATED, CostReport, IdlePolicy
from aifinops.core.money import ZERO
from aifinops.core.pricing import normalise_gpu_model, type_key
from aifinops.core.recommend.base import Facts, GpuHolding, HourUse, Offer, SpendLine
from aifinops.core.windows import Window
from aifinops.store import facts as stored
from aifinops.store import recommend as engine

ALLOCATION_BY = ("team", "namespace", "workload", "node")
TIME_SLICED = "nvidia.com/gpu.shared"
CHECKPOINT_LABEL = "ai-finops.io/checkpoints"
WORKLOAD_KIND_LABELS = ("ai-finops.io/workload-kind", "workload-kind")
NOTEBOOK_LABEL = "notebook-name"  # Kubeflow puts it on a Notebook's pods

# A controller's kind as the rules name it: a ReplicaSet is a Deployment's
CONTROLLER_KINDS = {
    "ReplicaSet": "Deployment",
    "Deployment": "Deployment",
    "StatefulSet": "StatefulSet",
    "DaemonSet": "DaemonSet",
    "Job": "Job",
    "CronJob": "CronJob",
    "Notebook": "Notebook",
    "slurm-job": "Job",
}
# the kind of work a label names (the part before `_`: `training_small` is training)
LABELLED_KINDS = {"notebook": "Notebook", "training": "Job", "batch": "Job", "job": "Job"}
# a workload with no controller: what the store calls it
WORKLOAD_KINDS = {"pod": "Pod", "process": "Process", "slurm-job": "Job"}
CAPACITY = {
    "spot": "spot",
    "preemptible": "spot",
    "interruptible": "spot",
    "reserved": "reserved",
    "committed": "reserved",
    "on-demand": "on-demand",
    "on_demand": "on-demand",
    "ondemand": "on-demand",
}
TRUE = {"true", "yes", "1"}


class Recommend:
    def __init__(self, ctx: AppContext, costs: Costs, prices: Prices):
        self.ctx, self.costs, self.prices = ctx, costs, prices

    def facts(self, window: Window) -> Facts:
        """What the rules read about `window`: every GPU holding with its hourly use and
        cost, the catalog's offers, the spend no team carries and the window's total."""
        store = self.ctx.store
        found = engine.holdings(store, window.start_ms, window.end_ms)
        span = f"{window.start.isoformat()},{window.end.isoformat()}"
        report = self.costs.cost(CostQuery(window=span, by=ALLOCATION_BY, idle=IdlePolicy.SEPARATE))
        nodes = {r["node_id"]: r for r in stored.nodes(store).to_pylist()}
        prices, _ = self.prices.node_prices()
        on_prem = {p.node_id for p in prices if p.source.startswith("on-prem")}
        with _gc_paused():
            money = _money_by_holding(report, found.pods)
            series = _series(found.hours)
            shape = _NodeShape(nodes, on_prem)
            holdings = tuple(
                shape.holding(h, series.get(h["holding"], ()), money.get(h["holding"]))
                for h in found.holdings.to_pylist()
            )
        return Facts(
            start_ms=window.start_ms,
            end_ms=window.end_ms,
            holdings=holdings,
            offers=self.offers(),
            spend=self._unallocated(report),
            total_spend=report.asset_cost,
            currency=self.ctx.settings.currency,
        )

    def offers(self) -> tuple[Offer, ...]:
        """The catalog in force as `Offer`s (per-instance prices): one per provider,
        region and instance type, the first the catalog gives (fresh price-API answers
        before the bundled catalog). A region-less catalog row (it answers any region) has
        region ''."""
        seen: set[tuple[str, str, str]] = set()
        out = []
        for o in self.prices.catalog.offers:
            model = normalise_gpu_model(o.gpu_model)
            if model is None or o.gpu_count <= 0:
                continue
            key = (o.provider.lower(), (o.region or "").lower(), type_key(o.instance_type))
            if key in seen:
                continue
            seen.add(key)
            memory = gpu_memory_mib(model)
            out.append(
                Offer(
                    provider=o.provider,
                    region=o.region or "",
                    gpu_model=model,
                    gpus=o.gpu_count,
                    gpu_memory_mib=memory if memory is not None else math.nan,
                    instance_type=o.instance_type or None,
                    on_demand=o.on_demand_hourly,
                    spot=o.spot_hourly,
                    reserved_1y=o.commit_1y_hourly,
                    reserved_3y=o.commit_3y_hourly,
                )
            )
        return tuple(out)

    def _unallocated(self, report: CostReport) -> tuple[SpendLine, ...]:
        """The allocation's rows no team carries (`__unallocated__`), by namespace,
        workload and node, with the workload's labels (what a label to add is judged by)."""
        rows = [
            r
            for r in report.rows
            if r.key.get("team") == UNALLOCATED
            and not any(r.is_bucket(b) for b in BUCKETS)
            and r.total_cost > 0
        ]
        labels = engine.workload_labels(self.ctx.store, sorted({r.key["workload"] for r in rows}))
        return tuple(
            SpendLine(
                key={d: r.key[d] for d in ("namespace", "workload", "node")},
                cost=r.total_cost,
                source="allocation",
                labels=labels.get(r.key["workload"], {}),
            )
            for r in rows
        )


def holding_kind(controller: str | None, kind: str | None, labels: Mapping[str, str]) -> str:
    """What a holding is, as the rules name it: a Kubeflow notebook's pods by their label;
    else the controller's kind (a ReplicaSet is a Deployment's); else the kind of work a
    label names (`workload-kind: notebook`); else the workload's own kind (Pod, Process)."""
    if labels.get(NOTEBOOK_LABEL):
        return "Notebook"
    if controller:
        owner = controller.split("/", 1)[0]
        return CONTROLLER_KINDS.get(owner, owner)
    for key in WORKLOAD_KIND_LABELS:
        named = (labels.get(key) or "").strip().lower().split("_", 1)[0]
        if named in LABELLED_KINDS:
            return LABELLED_KINDS[named]
    return WORKLOAD_KINDS.get((kind or "").lower(), kind or "Pod")


def _money_by_holding(report: CostReport, pods: pa.Table) -> dict[str, _Money]:
    """Per holding: its pods' cost in the allocation, in all and by team (a bucket's row
    has the bucket in every dimension, its workload too)."""
    holding_of = dict(
        zip(pods["workload_id"].to_pylist(), pods["holding"].to_pylist(), strict=True)
    )
    out: dict[str, _Money] = {}
    for r in report.rows:
        pod = r.key["workload"]
        if pod in BUCKETS:
            continue
        key = holding_of.get(pod, pod)
        acc = out.get(key)
        if acc is None:
            acc = out[key] = _Money()
        cost = r.total_cost
        acc.cost += cost
        acc.teams[r.key["team"]] = acc.teams.get(r.key["team"], ZERO) + cost
    return out


def _series(hours: pa.Table) -> dict[str, tuple[HourUse, ...]]:
    """The hours table (ordered by holding and hour) as each holding's series: the values
    made in one pass, then cut where the holding changes."""
    n = hours.num_rows
    if n == 0:
        return {}
    memory = pc.fill_null(hours["memory_mib"], math.nan)
    cols = [hours[c].to_pylist() for c in ("start_ms", "held_gpus", "busy_gpus", "peak_gpus")]
    uses = tuple(map(HourUse, *cols, memory.to_pylist()))
    key = hours["holding"].combine_chunks()
    changed = pc.indices_nonzero(pc.not_equal(key.slice(1), key.slice(0, n - 1)))
    cuts = [0, *(i + 1 for i in changed.to_pylist()), n]
    keys = key.take(pa.array(cuts[:-1])).to_pylist()
    return {k: uses[a:b] for k, a, b in zip(keys, cuts, cuts[1:], strict=False)}


@dataclass
class _Money:
    cost: Decimal = ZERO
    teams: dict[str, Decimal] = field(default_factory=dict)


class _NodeShape:
    """Builds a holding from its engine row and what its node is."""

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]], on_prem: set[str]):
        self.nodes = nodes
        self.models = {n: _model(r.get("gpu_model")) for n, r in nodes.items()}
        self.capacity = {n: _capacity(r, n in on_prem) for n, r in nodes.items()}

    def holding(
        self, h: Mapping[str, Any], hours: tuple[HourUse, ...], money: _Money | None
    ) -> GpuHolding:
        node_id = h["node_id"]
        node = self.nodes.get(node_id) or {}
        model, memory = self.models.get(node_id, ("", math.nan))
        labels = dict(h["labels"] or [])
        gpus, memory = _gpus(h, node, memory)
        money = money or _Money()
        # as `GpuHolding.held_hours` counts them, so that cost_per_hour x held_hours is
        # its cost in the window
        held = sum(min(1.0, h.held_gpus / gpus) for h in hours) if gpus > 0 else 0.0
        held_hours = Decimal(repr(held))
        teams = money.teams
        return GpuHolding(
            workload=h["holding"],
            namespace=h["namespace"] or UNALLOCATED,
            team=max(teams, key=lambda t: (teams[t], t)) if teams else UNALLOCATED,
            kind=holding_kind(h["controller"], h["kind"], labels),
            node=node_id or "",
            gpu_model=model,
            gpu_memory_mib=memory,
            gpus=gpus,
            cost_per_hour=money.cost / held_hours if held_hours > 0 else ZERO,
            hours=hours,
            replicas=int(h["replicas"]),
            provider=node.get("provider"),
            region=node.get("region"),
            instance_type=node.get("instance_type"),
            capacity=self.capacity.get(node_id, "on-demand"),
            serving=bool(h["serving"]),
            checkpoints=labels.get(CHECKPOINT_LABEL, "").strip().lower() in TRUE,
            labels=labels,
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cycle collector paused while the facts are built: they are a million small
    acyclic objects, and its passes over the growing heap took half the building time
    (measured: 1.5 s -> 0.65 s for 764 k hours)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _model(name: str | None) -> tuple[str, float]:
    """A node's GPU model as the catalog names it ('H100 80GB') and one GPU's memory."""
    memory = gpu_memory_mib(name)
    return normalise_gpu_model(name) or "", memory if memory is not None else math.nan


def _gpus(h: Mapping[str, Any], node: Mapping[str, Any], memory: float) -> tuple[float, float]:
    """GPUs one replica asks for (a MIG instance as its share of the GPU; a time-slice as
    request / the node's replicas) and the memory of one GPU or instance it holds (`memory`:
    the node's GPU's). A workload whose request is unknown asks for the most GPUs it was
    seen on at once."""
    request = float(h["gpu_request"] or 0) or float(h["gpus_seen"] or 1)
    mig = mig_profile(h["gpu_resource"], node.get("gpu_model"))
    if mig is not None:
        share, mig_memory = mig
        return request * float(share), mig_memory
    if h["gpu_resource"] == TIME_SLICED and (node.get("gpu_replicas") or 0) > 1:
        request /= float(node["gpu_replicas"])
    return request, memory


def _capacity(node: Mapping[str, Any], on_prem: bool) -> str:
    if on_prem:
        return "on-prem"
    kind = (node.get("capacity_type") or "").strip().lower()
    return CAPACITY.get(kind, "on-demand")
