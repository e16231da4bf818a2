"""Cost allocation in the engine (DESIGN §2, items 1-8), as Ibis expressions.

The steps, each a set operation:
  1. Scan `gpu_usage` once in the window: per step, node and holder, sum held GPU-ms
     (by the shared-GPU policy), busy GPU-ms, and device-ms (all rows of a node).
  2. Join node prices (a small table): GPU cost = held ms x per-GPU price; waste =
     (held - busy) ms x price. A node's presence in a step = its device-ms / its GPUs.
  3. CPU and RAM: each workload on a priced node is charged max(request, usage) x unit
     price for the part of each step it ran, scaled down if a node's charges would exceed
     the node's CPU/RAM cost in that step; the rest is that node's CPU/RAM idle.
  4. Idle (rows with no holder) stays in `__idle__`, or is shared out per node and step,
     weighted by each workload's cost of that resource or evenly.
  5. Attribution: dimensions from labels, namespace labels, the namespace-to-team map;
     buckets `__unpriced__` > `__idle__` > `__shared__` > `__unallocated__`.
  6. Group by the requested dimensions.
Money is carried as "cost units" (ms x $/h, exact decimals) and turned into dollars once,
on the final rows, by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from aifinops.core.attribution import AttributionRules
from aifinops.core.model import (
    ATTRIBUTED_DIMENSIONS,
    IDLE,
    SHARED,
    UNALLOCATED,
    UNPRICED,
    IdlePolicy,
    SharedGpuPolicy,
)
from aifinops.core.pricing import NodePrice
from aifinops.store.db import Store

RATE = "decimal(38,9)"
UNITS = "decimal(38,9)"


@dataclass(frozen=True)
class AllocationQuery:
    start_ms: int
    end_ms: int
    step_ms: int
    by: tuple[str, ...]
    shared_gpu: SharedGpuPolicy = SharedGpuPolicy.REQUEST
    idle: IdlePolicy = IdlePolicy.SEPARATE
    per_step: bool = False
    team: str | None = None


@dataclass(frozen=True)
class AllocationResult:
    rows: pa.Table  # dims..., [step], gpu_ms, used_ms, gpu_units, cpu_units, ram_units,
    #                 idle_units, waste_units, signals
    asset_units: Decimal
    unpriced: pa.Table  # node_id, gpu_ms


def price_table(prices: list[NodePrice], nodes: pa.Table) -> pa.Table:
    """Per-node rates for the engine: per-GPU, per-core, per-GiB, and node facts."""
    by_id = {p.node_id: p for p in prices}
    cols = nodes.to_pydict()
    out: dict[str, list[object]] = {
        k: []
        for k in (
            "node_id",
            "priced",
            "gpu_rate",
            "cpu_rate",
            "ram_rate",
            "cpu_node_rate",
            "ram_node_rate",
            "gpu_count",
            "gpu_model",
            "provider",
            "region",
            "instance_type",
            "util_signal",
        )
    }
    q = Decimal("0.000000001")
    for i, node_id in enumerate(cols["node_id"]):
        price = by_id.get(node_id)
        priced = bool(price and price.priced)
        cores = Decimal(str(cols["cpu_cores"][i] or 0))
        mem = Decimal(str(cols["memory_gib"][i] or 0))
        cpu_total = price.cpu_hourly if priced and price else Decimal(0)
        ram_total = price.ram_hourly if priced and price else Decimal(0)
        out["node_id"].append(node_id)
        out["priced"].append(priced)
        out["gpu_rate"].append((price.gpu_hourly if priced and price else Decimal(0)).quantize(q))
        out["cpu_rate"].append((cpu_total / cores).quantize(q) if cores > 0 else Decimal(0))
        out["ram_rate"].append((ram_total / mem).quantize(q) if mem > 0 else Decimal(0))
        out["cpu_node_rate"].append(cpu_total.quantize(q))
        out["ram_node_rate"].append(ram_total.quantize(q))
        out["gpu_count"].append(int(cols["gpu_count"][i] or 0) or 1)
        for name in ("gpu_model", "provider", "region", "instance_type", "util_signal"):
            out[name].append(cols[name][i])
    dec = pa.decimal128(38, 9)
    schema = pa.schema(
        [
            ("node_id", pa.string()),
            ("priced", pa.bool_()),
            ("gpu_rate", dec),
            ("cpu_rate", dec),
            ("ram_rate", dec),
            ("cpu_node_rate", dec),
            ("ram_node_rate", dec),
            ("gpu_count", pa.int64()),
            ("gpu_model", pa.string()),
            ("provider", pa.string()),
            ("region", pa.string()),
            ("instance_type", pa.string()),
            ("util_signal", pa.string()),
        ]
    )
    return pa.table(out, schema=schema)


def allocate(
    store: Store, query: AllocationQuery, prices: pa.Table, rules: AttributionRules
) -> AllocationResult:
    s, e, step_ms = query.start_ms, query.end_ms, query.step_ms
    con = store.con
    p = ibis.memtable(prices)

    # 1. the one scan over samples
    u = store.table("gpu_usage")
    u = u.filter((u.ts_ms >= s) & (u.ts_ms < e))
    held = u.held_req if query.shared_gpu is SharedGpuPolicy.REQUEST else u.held_use
    step = (ibis.literal(s) + ((u.ts_ms - s) // step_ms) * step_ms).cast("int64")
    scanned = u.group_by([step.name("step"), u.node_id, u.workload_id]).aggregate(
        held=held.sum().cast(UNITS),
        used=u.used.sum().cast(UNITS),
        dev=u.held_req.sum().cast(UNITS),
    )
    g = con.create_table(_temp("alloc_scan"), scanned, temp=True)
    try:
        return _allocate_from_scan(store, g, p, query, rules, step_ms)
    finally:
        con.drop_table(g.get_name(), force=True)


_counter = 0


def _temp(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"_{prefix}_{_counter}"


def _allocate_from_scan(
    store: Store,
    g: ir.Table,
    p: ir.Table,
    query: AllocationQuery,
    rules: AttributionRules,
    step_ms: int,
) -> AllocationResult:
    s, e = query.start_ms, query.end_ms
    zero = ibis.literal(Decimal(0), type=UNITS)

    # 2. GPU money per (step, node, holder)
    gp = g.left_join(p, g.node_id == p.node_id).select(
        g.step,
        g.node_id,
        g.workload_id,
        g.held,
        g.used,
        g.dev,
        priced=p.priced.fill_null(False),
        gpu_rate=p.gpu_rate.fill_null(Decimal(0)),
        gpu_count=p.gpu_count.fill_null(1),
    )
    gpu_rows = gp.select(
        "step",
        "node_id",
        "workload_id",
        gpu_ms=gp.held,
        used_ms=gp.workload_id.notnull().ifelse(gp.used, zero),
        gpu_units=(gp.held * gp.gpu_rate).cast(UNITS),
        cpu_units=zero,
        ram_units=zero,
        waste_units=gp.workload_id.notnull().ifelse(
            (ibis.greatest(gp.held - gp.used, zero) * gp.gpu_rate).cast(UNITS), zero
        ),
    )

    presence = gp.group_by(["step", "node_id"]).aggregate(
        dev=gp.dev.sum(), gpu_count=gp.gpu_count.max()
    )
    presence = presence.join(p, presence.node_id == p.node_id).select(
        presence.step,
        presence.node_id,
        present_ms=(presence.dev / presence.gpu_count).cast(UNITS),
        cpu_node_rate=p.cpu_node_rate,
        ram_node_rate=p.ram_node_rate,
        cpu_rate=p.cpu_rate,
        ram_rate=p.ram_rate,
        priced=p.priced,
    )
    presence = presence.mutate(
        cpu_asset=(presence.present_ms * presence.cpu_node_rate).cast(UNITS),
        ram_asset=(presence.present_ms * presence.ram_node_rate).cast(UNITS),
    )
    asset_gpu = (gp.dev * gp.gpu_rate).cast(UNITS)
    asset_units = _scalar(store, gp.filter(gp.priced).aggregate(x=asset_gpu.sum()))
    asset_units += _scalar(
        store,
        presence.filter(presence.priced).aggregate(
            x=(presence.cpu_asset + presence.ram_asset).sum()
        ),
    )

    # 3. CPU and RAM by max(request, usage) for the time run, capped by node capacity
    cpu_rows = _cpu_ram_rows(store, presence, s, e, step_ms)

    rows = ibis.union(gpu_rows, cpu_rows)
    rows = rows.group_by(["step", "node_id", "workload_id"]).aggregate(
        gpu_ms=rows.gpu_ms.sum(),
        used_ms=rows.used_ms.sum(),
        gpu_units=rows.gpu_units.sum(),
        cpu_units=rows.cpu_units.sum(),
        ram_units=rows.ram_units.sum(),
        waste_units=rows.waste_units.sum(),
    )
    rows = rows.mutate(idle_units=zero)

    # 4. idle policy
    if query.idle is not IdlePolicy.SEPARATE:
        rows = _share_idle(rows, query.idle)

    # 5. attribution and buckets, after collapsing steps that the output does not keep:
    #    label lookups then run once per workload and node, not once per step
    if not query.per_step:
        rows = rows.group_by(["node_id", "workload_id"]).aggregate(
            step=ibis.literal(s).cast("int64"), **_sums(rows)
        )
    rows = _attribute(store, rows, p, rules, query.by)

    if query.team is not None:
        rows = rows.filter(rows.team == query.team)

    # 6. group
    keys = list(query.by) + (["step"] if query.per_step else [])
    metrics = {**_sums(rows), "signals": rows.util_signal.collect(distinct=True)}
    if keys:
        result = store.con.to_pyarrow(rows.group_by(keys).aggregate(**metrics).order_by(keys))
    else:
        result = store.con.to_pyarrow(rows.aggregate(**metrics))

    unpriced = gp.filter(~gp.priced).group_by("node_id").aggregate(gpu_ms=gp.dev.sum())
    return AllocationResult(result, asset_units, store.con.to_pyarrow(unpriced))


SUMMED = ("gpu_ms", "used_ms", "gpu_units", "cpu_units", "ram_units", "idle_units", "waste_units")


def _sums(rows: ir.Table) -> dict[str, ir.Value]:
    return {name: rows[name].sum() for name in SUMMED}


def _scalar(store: Store, expr: ir.Table) -> Decimal:
    value = store.con.to_pyarrow(expr).column(0)[0].as_py()
    return Decimal(value) if value is not None else Decimal(0)


def _cpu_ram_rows(store: Store, presence: ir.Table, s: int, e: int, step_ms: int) -> ir.Table:
    zero = ibis.literal(Decimal(0), type=UNITS)
    w = store.table("workloads")
    w = w.filter(
        w.node_id.notnull()
        & (
            (w.cpu_request.fill_null(0) > 0)
            | (w.mem_request_gib.fill_null(0) > 0)
            | (w.cpu_usage.fill_null(0) > 0)
            | (w.mem_usage_gib.fill_null(0) > 0)
        )
        & (w.start_ms.fill_null(s) < e)
        & (w.end_ms.fill_null(e) > s)
    )
    w = w.select(
        "workload_id",
        "node_id",
        start=w.start_ms.fill_null(s),
        end=w.end_ms.fill_null(e),
        cpu=ibis.greatest(w.cpu_request.fill_null(0), w.cpu_usage.fill_null(0)),
        mem=ibis.greatest(w.mem_request_gib.fill_null(0), w.mem_usage_gib.fill_null(0)),
    )
    # the steps each workload overlaps, as rows, then an equi-join on (node, step): a range
    # join of every workload with every step of its node would be quadratic
    first = ibis.literal(s) + ((w.start - s) // step_ms) * step_ms
    first = ibis.greatest(first, ibis.literal(s))
    w = w.mutate(step=ibis.range(first, w.end, step_ms).unnest().cast("int64"))
    pr = presence.filter(presence.priced)
    j = w.join(pr, [w.node_id == pr.node_id, w.step == pr.step])
    overlap = ibis.least(j.end, j.step + step_ms, ibis.literal(e)) - ibis.greatest(
        j.start, j.step, ibis.literal(s)
    )
    j = j.select(
        "step",
        "node_id",
        "workload_id",
        "cpu_asset",
        "ram_asset",
        cpu_want=(overlap.cast(UNITS) * (j.cpu * j.cpu_rate).cast(RATE)).cast(UNITS),
        ram_want=(overlap.cast(UNITS) * (j.mem * j.ram_rate).cast(RATE)).cast(UNITS),
    )
    win = ibis.window(group_by=[j.step, j.node_id])
    j = j.mutate(cpu_sum=j.cpu_want.sum().over(win), ram_sum=j.ram_want.sum().over(win))
    charged = j.select(
        "step",
        "node_id",
        "workload_id",
        gpu_ms=zero,
        used_ms=zero,
        gpu_units=zero,
        cpu_units=(j.cpu_sum <= j.cpu_asset).ifelse(
            j.cpu_want, (j.cpu_want * j.cpu_asset / j.cpu_sum).cast(UNITS)
        ),
        ram_units=(j.ram_sum <= j.ram_asset).ifelse(
            j.ram_want, (j.ram_want * j.ram_asset / j.ram_sum).cast(UNITS)
        ),
        waste_units=zero,
    )
    used = charged.group_by(["step", "node_id"]).aggregate(
        cpu=charged.cpu_units.sum(), ram=charged.ram_units.sum()
    )
    idle = presence.filter(presence.priced).left_join(
        used, [presence.step == used.step, presence.node_id == used.node_id]
    )
    idle = idle.select(
        step=idle.step,
        node_id=idle.node_id,
        workload_id=ibis.null("string"),
        gpu_ms=zero,
        used_ms=zero,
        gpu_units=zero,
        cpu_units=(idle.cpu_asset - idle.cpu.fill_null(0)).cast(UNITS),
        ram_units=(idle.ram_asset - idle.ram.fill_null(0)).cast(UNITS),
        waste_units=zero,
    )
    return ibis.union(charged, idle)


def _share_idle(rows: ir.Table, policy: IdlePolicy) -> ir.Table:
    """Move each node-step's idle cost onto the workloads of that node-step."""
    zero = ibis.literal(Decimal(0), type=UNITS)
    held = rows.filter(rows.workload_id.notnull())
    idle = rows.filter(rows.workload_id.isnull()).select(
        "step",
        "node_id",
        ig=rows.gpu_units,
        ic=rows.cpu_units,
        ir_=rows.ram_units,
        idle_gpu_ms=rows.gpu_ms,
    )
    win = ibis.window(group_by=[held.step, held.node_id])
    held = held.mutate(
        sg=held.gpu_units.sum().over(win),
        sc=held.cpu_units.sum().over(win),
        sr=held.ram_units.sum().over(win),
        n=held.count().over(win),
    )
    j = held.left_join(idle, [held.step == idle.step, held.node_id == idle.node_id])
    ig, ic, ir_ = j.ig.fill_null(0), j.ic.fill_null(0), j.ir_.fill_null(0)
    if policy is IdlePolicy.WEIGHTED:
        add_g = (j.sg > 0).ifelse((ig * j.gpu_units / j.sg).cast(UNITS), zero)
        add_c = (j.sc > 0).ifelse((ic * j.cpu_units / j.sc).cast(UNITS), zero)
        add_r = (j.sr > 0).ifelse((ir_ * j.ram_units / j.sr).cast(UNITS), zero)
    else:
        add_g = (ig / j.n).cast(UNITS)
        add_c = (ic / j.n).cast(UNITS)
        add_r = (ir_ / j.n).cast(UNITS)
    shared = j.select(
        step=j.step,
        node_id=j.node_id,
        workload_id=j.workload_id,
        gpu_ms=j.gpu_ms,
        used_ms=j.used_ms,
        gpu_units=j.gpu_units + add_g,
        cpu_units=j.cpu_units + add_c,
        ram_units=j.ram_units + add_r,
        waste_units=j.waste_units,
        idle_units=(add_g + add_c + add_r).cast(UNITS),
    )
    # What could not be shared (no workload, or nothing to weigh by) stays idle; the idle
    # GPU-hours stay with the bucket since they were held by no one.
    takers = held.group_by(["step", "node_id"]).aggregate(
        sg=held.sg.max(), sc=held.sc.max(), sr=held.sr.max(), n=held.n.max()
    )
    left = idle.left_join(takers, [idle.step == takers.step, idle.node_id == takers.node_id])
    has = left.n.fill_null(0) > 0
    if policy is IdlePolicy.WEIGHTED:
        keep_g = (has & (left.sg > 0)).ifelse(zero, left.ig)
        keep_c = (has & (left.sc > 0)).ifelse(zero, left.ic)
        keep_r = (has & (left.sr > 0)).ifelse(zero, left.ir_)
    else:
        keep_g, keep_c, keep_r = (has.ifelse(zero, x) for x in (left.ig, left.ic, left.ir_))
    remaining = left.select(
        step=left.step,
        node_id=left.node_id,
        workload_id=ibis.null("string"),
        gpu_ms=left.idle_gpu_ms,
        used_ms=zero,
        gpu_units=keep_g.cast(UNITS),
        cpu_units=keep_c.cast(UNITS),
        ram_units=keep_r.cast(UNITS),
        waste_units=zero,
        idle_units=zero,
    )
    return ibis.union(shared, remaining)


def _attribute(
    store: Store, rows: ir.Table, p: ir.Table, rules: AttributionRules, by: tuple[str, ...]
) -> ir.Table:
    w = store.table("workloads").select("workload_id", "namespace", "labels")
    ns = store.table("namespaces").select("namespace", ns_labels="labels")
    j = rows.left_join(w, rows.workload_id == w.workload_id)
    j = j.left_join(ns, j.namespace == ns.namespace)
    j = j.left_join(p, j.node_id == p.node_id)
    team_map = None
    if rules.namespace_teams:
        team_map = ibis.memtable(
            {
                "namespace": list(rules.namespace_teams),
                "mapped_team": list(rules.namespace_teams.values()),
            }
        )
        j = j.left_join(team_map, j.namespace == team_map.namespace)

    bucket = (
        ibis.cases(
            (~j.priced.fill_null(False), ibis.literal(UNPRICED)),
            (j.workload_id.isnull(), ibis.literal(IDLE)),
            (j.namespace.isin(list(rules.shared_namespaces)), ibis.literal(SHARED)),
            else_=ibis.null("string"),
        )
        if rules.shared_namespaces
        else ibis.cases(
            (~j.priced.fill_null(False), ibis.literal(UNPRICED)),
            (j.workload_id.isnull(), ibis.literal(IDLE)),
            else_=ibis.null("string"),
        )
    )
    dims: dict[str, ir.Value] = {}
    wanted = set(by) | ({"team"} if "team" not in by else set())
    for dim in wanted:
        if dim in ATTRIBUTED_DIMENSIONS:
            keys = rules.keys_for(dim)
            candidates = [_label(j.labels, k) for k in keys]
            candidates += [_label(j.ns_labels, k) for k in keys]
            if dim == "team" and team_map is not None:
                candidates.append(j.mapped_team)
            value = ibis.coalesce(*candidates, ibis.literal(UNALLOCATED))
        elif dim == "namespace":
            value = j.namespace.fill_null(UNALLOCATED)
        elif dim == "workload":
            value = j.workload_id
        elif dim == "node":
            value = j.node_id
        else:  # gpu_model, provider, region, instance_type come from the node
            value = j[dim].fill_null(UNALLOCATED)
        dims[dim] = bucket.fill_null(value)
    return j.select(
        "step",
        "gpu_ms",
        "used_ms",
        "gpu_units",
        "cpu_units",
        "ram_units",
        "idle_units",
        "waste_units",
        util_signal=j.util_signal,
        **dims,
    )


def _label(labels: ir.MapValue, key: str) -> ir.StringValue:
    return labels.get(key).nullif("")
