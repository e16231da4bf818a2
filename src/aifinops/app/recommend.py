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
its GPUs: a log without memory.used, a source that reads none) is NaN, in an hour and in
`gpu_memory_mib` of a model nobody knows."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aifinops.app.context import AppContext
from aifinops.app.costs import Costs
from aifinops.app.prices import Prices
from aifinops.core.gpus import gpu_memory_mib, mig_profile
from aifinops.core.model import UNALLOCATED, IdlePolicy
from aifinops.core.money import ZERO, dollars_from_units
from aifinops.core.pricing import normalise_gpu_model, type_key
from aifinops.core.recommend.base import Facts, GpuHolding, HourUse, Offer, SpendLine
from aifinops.core.windows import Window, allocation_step
from aifinops.errors import UsageError
from aifinops.store import recommend as engine
from aifinops.store.allocate import AllocationQuery, allocate, price_table

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
        prices, nodes = self.prices.node_prices()
        allocation = allocate(
            store, self.allocation_query(window), price_table(prices, nodes),
            self.ctx.settings.attribution.rules(),
        )  # fmt: skip
        found = engine.holdings(store, window.start_ms, window.end_ms, allocation.rows)
        on_prem = {p.node_id for p in prices if p.source.startswith("on-prem")}
        shape = _NodeShape({r["node_id"]: r for r in nodes.to_pylist()}, on_prem)
        with _gc_paused():
            holdings = _holdings(found, shape)
        return Facts(
            start_ms=window.start_ms,
            end_ms=window.end_ms,
            holdings=holdings,
            offers=self.offers(),
            spend=self._unallocated(found.unallocated),
            total_spend=dollars_from_units(allocation.asset_units),
            currency=self.ctx.settings.currency,
        )

    def allocation_query(self, window: Window) -> AllocationQuery:
        """The allocation the facts rest on: by team, namespace, workload and node (one row
        per pod and node), idle kept apart, the configured shared-GPU policy and step (as
        `cost --by team,namespace,workload,node --idle separate` runs it)."""
        config = self.ctx.settings.allocation
        step_ms = allocation_step(config.step, window)
        if step_ms < 60_000:  # as `cost` refuses it
            raise UsageError("the step must be at least 1m", where="--step")
        return AllocationQuery(window.start_ms, window.end_ms, step_ms, ALLOCATION_BY,
                               config.shared_gpu, IdlePolicy.SEPARATE)  # fmt: skip

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

    def _unallocated(self, rows: pa.Table) -> tuple[SpendLine, ...]:
        """The allocation's rows no team carries (`__unallocated__`), by namespace,
        workload and node, the largest first, with the workload's labels (what a label to
        add is judged by)."""
        cols = rows.to_pydict()
        labels = engine.workload_labels(self.ctx.store, sorted(set(cols["workload"])))
        return tuple(
            SpendLine(
                key={"namespace": ns, "workload": workload, "node": node},
                cost=dollars_from_units(units),
                source="allocation",
                labels=labels.get(workload, {}),
            )
            for ns, workload, node, units in zip(
                cols["namespace"], cols["workload"], cols["node"], cols["cost_units"], strict=True
            )
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


# the engine's holding columns `_NodeShape.holding` reads, in order
_ROW = ("holding", "namespace", "node_id", "controller", "kind", "labels", "replicas", "serving",
        "cost_units", "team")  # fmt: skip


def _holdings(found: engine.HoldingTables, shape: _NodeShape) -> tuple[GpuHolding, ...]:
    """The engine's holdings as the rules' values, each with its series of hours (a block
    of the hours table, which is ordered by holding)."""
    hours, t = found.hours, found.holdings
    series = [hours[c].to_pylist() for c in ("start_ms", "held_gpus", "busy_gpus", "peak_gpus")]
    memory = pc.fill_null(hours["memory_mib"], math.nan).to_pylist()
    uses = tuple(map(HourUse, *series, memory))
    blocks = _blocks(hours["holding"])
    h = {c: t[c].to_pylist() for c in (*_ROW, "gpu_request", "gpus_seen", "gpu_resource")}
    spans = [blocks[k] for k in h["holding"]]
    sizes = list(map(shape.size, h["gpu_request"], h["gpus_seen"], h["gpu_resource"], h["node_id"]))
    held = _held_hours(hours["held_gpus"].to_numpy(), spans, [g for g, _ in sizes])
    rows = zip(*(h[c] for c in _ROW), strict=True)
    return tuple(map(shape.holding, rows, (uses[a:b] for a, b in spans), sizes, held))


def _blocks(keys: pa.ChunkedArray) -> dict[str, tuple[int, int]]:
    """Where each key's block begins and ends in `keys` (ordered, so each key is one
    block): cut where the key changes."""
    n = len(keys)
    if n == 0:
        return {}
    key = keys.combine_chunks()
    changed = pc.indices_nonzero(pc.not_equal(key.slice(1), key.slice(0, n - 1)))
    cuts = [0, *(i + 1 for i in changed.to_pylist()), n]
    names = key.take(pa.array(cuts[:-1])).to_pylist()
    return {k: (a, b) for k, a, b in zip(names, cuts, cuts[1:], strict=False)}


def _held_hours(
    held_gpus: np.ndarray[Any, Any], spans: list[tuple[int, int]], gpus: list[float]
) -> list[float]:
    """Each holding's held hours as `GpuHolding.held_hours` counts them (each hour, held
    GPUs / GPUs asked for, at most 1, added up in order as `sum` does, so the two agree to
    the last bit): the ratios of all hours in one pass, then one sum per holding."""
    asked = np.ones(len(held_gpus))
    for (a, b), g in zip(spans, gpus, strict=True):
        asked[a:b] = g
    with np.errstate(divide="ignore", invalid="ignore"):  # gpus 0: not counted below
        ratio = np.minimum(1.0, held_gpus / asked).tolist()
    return [sum(ratio[a:b]) if g > 0 else 0.0 for (a, b), g in zip(spans, gpus, strict=True)]


class _NodeShape:
    """Builds a holding from its engine row and what its node is."""

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]], on_prem: set[str]):
        self.nodes = nodes
        # per node: GPU model as the catalog names it, one GPU's memory, provider, region,
        # instance type, capacity
        self.node_facts = {
            n: (*_model(r.get("gpu_model")), r.get("provider"), r.get("region"),
                r.get("instance_type"), _capacity(r, n in on_prem))
            for n, r in nodes.items()
        }  # fmt: skip
        self._sizes: dict[tuple[Any, ...], tuple[float, float]] = {}

    def size(
        self, request: float | None, seen: int | None, resource: str | None, node_id: str | None
    ) -> tuple[float, float]:
        """GPUs one replica asks for and the memory of one of them (`_gpus`): a few
        distinct answers over a whole fleet, each worked out once."""
        key = (request, seen, resource, node_id)
        found = self._sizes.get(key)
        if found is None:
            node = self.nodes.get(node_id or "") or {}
            memory = self.node_facts.get(node_id or "", _NO_NODE)[1]
            found = self._sizes[key] = _gpus(request, seen, resource, node, memory)
        return found

    def holding(
        self,
        row: tuple[Any, ...],
        hours: tuple[HourUse, ...],
        size: tuple[float, float],
        held: float,
    ) -> GpuHolding:
        """`row`: the engine's columns `_ROW`; `size`: GPUs asked for and the memory of one
        (`size`); `held`: its held hours as `GpuHolding.held_hours` counts them
        (`_held_hours`), so that cost_per_hour x held_hours is its cost in the window."""
        key, namespace, node_id, controller, kind, labels, replicas, serving, units, team = row
        model, _, provider, region, instance_type, capacity = self.node_facts.get(node_id, _NO_NODE)
        labels = dict(labels or ())
        held_hours = Decimal(repr(held))
        return GpuHolding(
            workload=key,
            namespace=namespace or UNALLOCATED,
            team=team or UNALLOCATED,
            kind=holding_kind(controller, kind, labels),
            node=node_id or "",
            gpu_model=model,
            gpu_memory_mib=size[1],
            gpus=size[0],
            cost_per_hour=dollars_from_units(units) / held_hours if held_hours > 0 else ZERO,
            hours=hours,
            replicas=int(replicas),
            provider=provider,
            region=region,
            instance_type=instance_type,
            capacity=capacity,
            serving=bool(serving),
            checkpoints=labels.get(CHECKPOINT_LABEL, "").strip().lower() in TRUE,
            labels=labels,
        )


# what `_NodeShape.node_facts` says of a node the store does not know
_NO_NODE = ("", math.nan, None, None, None, "on-demand")


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


def _gpus(
    request: float | None,
    seen: int | None,
    resource: str | None,
    node: Mapping[str, Any],
    memory: float,
) -> tuple[float, float]:
    """GPUs one replica asks for (a MIG instance as its share of the GPU; a time-slice as
    request / the node's replicas) and the memory of one GPU or instance it holds (`memory`:
    the node's GPU's). A workload whose request is unknown asks for the most GPUs it was
    seen on at once."""
    asked = float(request or 0) or float(seen or 1)
    mig = mig_profile(resource, node.get("gpu_model"))
    if mig is not None:
        share, mig_memory = mig
        return asked * float(share), mig_memory
    if resource == TIME_SLICED and (node.get("gpu_replicas") or 0) > 1:
        asked /= float(node["gpu_replicas"])
    return asked, memory


def _capacity(node: Mapping[str, Any], on_prem: bool) -> str:
    if on_prem:
        return "on-prem"
    kind = (node.get("capacity_type") or "").strip().lower()
    return CAPACITY.get(kind, "on-demand")
