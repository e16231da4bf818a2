"""Cost allocation in the engine (DESIGN §2, items 1-8), as Ibis expressions.

The steps, each a set operation:
  1. Scan `gpu_usage` once in the window: per node and holder (and per step when the
     output or the idle policy keeps steps), sum held GPU-ms (by the shared-GPU policy)
     and busy GPU-ms. Each node's presence per step (its device-ms / its GPUs) comes from
     the `node_presence` roll-up of the same samples (docs/decisions/0006). Both are
     read from the coarsest hourly or daily roll-up whose rows fit the window's steps
     (`rollups.usage_source`, docs/decisions/0020): the same sums, fewer rows.
     1b. Under the `request` policy, holders of time-sliced GPUs (nodes with
     `gpu_replicas` > 1) hold `request / replicas` of each sample and the rest is idle:
     correction rows from those nodes' samples only (docs/decisions/0011).
  2. Join node prices (a small table): GPU cost = held ms x per-GPU price; waste =
     max(held - used, 0) ms x price over the row's span.
  3. CPU and RAM: each workload on a priced node is charged max(request, usage) x unit
     price for the part of each step it ran, scaled down if a node's charges would exceed
     the node's CPU/RAM cost in that step; the rest is that node's CPU/RAM idle.
  4. Idle (rows with no holder) stays in `__idle__`, or is shared out per node and step,
     weighted by each workload's cost of that resource or evenly.
  5. Attribution: dimensions from labels, namespace labels, the namespace-to-team map;
     buckets `__unpriced__` > `__idle__` > `__shared__` > `__unallocated__`. A workload
     whose labels name no model takes the models its serving counters name, its rows
     split among them by tokens (docs/decisions/0012).
  6. Group by the requested dimensions.
Money is carried as "cost units" (ms x $/h, exact decimals) and turned into dollars once,
on the final rows, by the caller (docs/decisions/0002).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from aifinops.core.attribution import AttributionRules
from aifinops.core.model import (
    ATTRIBUTED_DIMENSIONS,
    IDLE,
    MORE_PODS_THAN_REPLICAS,
    REPLICAS_UNKNOWN,
    REQUEST_UNKNOWN,
    SHARED,
    UNALLOCATED,
    UNPRICED,
    IdlePolicy,
    SharedGpuPolicy,
)
from aifinops.core.pricing import NodePrice
from aifinops.store import rollups
from aifinops.store.db import Store
from aifinops.store.units import served_models

# Exact decimal types chosen so that the engine's products need no rescaling: DuckDB's
# DECIMAL(38,6) x DECIMAL(38,9) is DECIMAL(38,15), so every cast of a product to UNITS
# is free. (A rescaling cast of 128-bit decimals costs more than the multiplication.)
MS = "decimal(38,6)"  # milliseconds x share: the sums of held_* and used
RATE = "decimal(38,9)"  # dollars per hour
UNITS = "decimal(38,15)"  # cost units: MS x RATE


def _cast(value: ir.Value, to: str) -> ir.Value:
    """CAST that is always written out. Ibis drops a cast to the type it believes a value
    has, and it believes decimal x decimal keeps the larger scale and decimal x float stays
    decimal, where DuckDB widens the scale or gives a DOUBLE."""
    return ops.Cast(value, to=dt.dtype(to)).to_expr()


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
    # keep the node of bucket rows (idle, unpriced, shared): reconciliation scales per node
    node_buckets: bool = False

    @property
    def stepwise(self) -> bool:
        """Whether rows must stay per step through the idle policy (else they collapse
        to one row per node and workload as soon as the per-step CPU/RAM caps are done)."""
        return self.per_step or self.idle is not IdlePolicy.SEPARATE


@dataclass(frozen=True)
class AllocationResult:
    rows: pa.Table  # dims..., [step], gpu_ms, used_ms, gpu_units, cpu_units, ram_units,
    #                 idle_units, waste_units, signals
    asset_units: Decimal
    unpriced: pa.Table  # node_id, gpu_ms
    # time-sliced GPUs split evenly, not by request / replicas: node -> why (step 1b)
    even_split: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # workloads whose model came from their serving counters (step 5): workload, model,
    # frac, basis, models
    served: list[dict[str, object]] = field(default_factory=list)


# the engine's per-node price table: its columns and their SQL types (rates exact, in
# DECIMAL(38, 9))
RATE_SQL = "DECIMAL(38, 9)"
PRICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("node_id", "VARCHAR"),
    ("priced", "BOOLEAN"),
    ("gpu_rate", RATE_SQL),
    ("cpu_rate", RATE_SQL),
    ("ram_rate", RATE_SQL),
    ("cpu_node_rate", RATE_SQL),
    ("ram_node_rate", RATE_SQL),
    ("gpu_count", "BIGINT"),
    ("gpu_model", "VARCHAR"),
    ("provider", "VARCHAR"),
    ("region", "VARCHAR"),
    ("instance_type", "VARCHAR"),
    ("util_signal", "VARCHAR"),
)


@dataclass(frozen=True)
class PriceTable:
    """Per-node rates for the engine, column by column (`PRICE_COLUMNS`), as Python values:
    `allocate` builds them into a DuckDB temporary table (an Arrow table built from Python
    objects makes pyarrow import pandas, a second cold, on every read)."""

    columns: dict[str, list[object]]


def price_table(prices: list[NodePrice], nodes: pa.Table) -> PriceTable:
    """Per-node rates for the engine: per-GPU, per-core, per-GiB, and node facts."""
    by_id = {p.node_id: p for p in prices}
    cols = nodes.to_pydict()
    out: dict[str, list[object]] = {name: [] for name, _ in PRICE_COLUMNS}
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
    return PriceTable(out)


def allocate(
    store: Store,
    query: AllocationQuery,
    prices: PriceTable,
    rules: AttributionRules,
    source: rollups.UsageSource | None = None,
) -> AllocationResult:
    """Allocate the window. The samples are read from `source`, by default the coarsest
    roll-up whose rows each lie inside one step (`rollups.usage_source`): every step below
    sums rows per step and never looks inside one, so each gives the same money."""
    s, e, step_ms = query.start_ms, query.end_ms, query.step_ms
    src = source or rollups.usage_source(s, e, step_ms)
    # where steps are not kept, the scan sums each node and holder over the whole window,
    # which any table whose rows lie inside the window gives alike: the coarsest of them
    # (a year's window at a 1 h step reads the daily roll-up's rows, not 24 times as many)
    scan = src if source or query.stepwise else rollups.usage_source(s, e, e - s)

    # 1. the one scan over samples: per node and holder, and per step only where the
    #    output or the idle policy keeps steps
    u = store.table(scan.usage)
    u = u.filter((u.ts_ms >= s) & (u.ts_ms < e))
    held = u.held_req if query.shared_gpu is SharedGpuPolicy.REQUEST else u.held_use
    keys = [u.node_id, u.workload_id]
    if query.stepwise:
        keys.insert(0, step_start(u.ts_ms, s, step_ms).name("step"))
    scanned = u.group_by(keys).aggregate(held=_cast(held.sum(), MS), used=_cast(u.used.sum(), MS))
    if not query.stepwise:
        scanned = scanned.mutate(step=ibis.literal(s).cast("int64"))
    # each node's presence per step, from the per-node roll-up of the same samples
    n = store.table(src.presence)
    n = n.filter((n.ts_ms >= s) & (n.ts_ms < e))
    presence = n.group_by([step_start(n.ts_ms, s, step_ms).name("step"), n.node_id]).aggregate(
        dev=_cast(n.dev.sum(), MS)
    )
    with Temps(store) as temps:
        p = temps.values("alloc_prices", PRICE_COLUMNS, list(prices.columns.values()))
        even: dict[str, tuple[str, ...]] = {}
        if query.shared_gpu is SharedGpuPolicy.REQUEST:
            scanned, even = _request_shares(store, temps, u, scanned, query, scan.sample_keys)
        g, served = scanned, None
        if "model" in query.by:
            # read twice (the money, and the models' served shares): made once
            g = temps.create("alloc_scan", scanned)
            served = temps.create("alloc_served", served_models(store, s, e))
        result = _allocate_from_scan(store, temps, g, presence, p, query, rules, served)
        used: list[dict[str, object]] = []
        if served is not None:
            used = _served_used(store, g, served, rules)
        return replace(result, even_split=even, served=used)


def _request_shares(
    store: Store,
    temps: Temps,
    u: ir.Table,
    scanned: ir.Table,
    query: AllocationQuery,
    sample_keys: tuple[str, ...] = rollups.RAW.sample_keys,
) -> tuple[ir.Table, dict[str, tuple[str, ...]]]:
    """1b. The `request` policy on time-sliced GPUs (DESIGN §2.4, docs/decisions/0011).

    Samples are stored with a shared GPU's time split evenly among the pods on it (the
    scrape knows neither the node's replicas nor the pods' requests). On nodes with
    `gpu_replicas` > 1, each holder of a sample is given instead `request / replicas` of
    the sample's time (a request counts on each GPU the pod is on), and the unheld rest
    goes to the NULL holder (idle): the difference is added to the scan as correction
    rows, so a sample's rows still sum to its duration. Only those nodes' samples are read
    again (sums per sample, joined back to its holders); the rest of the fleet stays one
    scan. The even split stays where a sample's pods ask for more than the replicas or a
    pod's request is unknown, and where a pod asks for `nvidia.com/gpu.shared` on a node
    whose replicas are unknown: those nodes come back with their reasons, for the report.
    A roll-up is read per group of samples with the same holders (`sample_keys`): all
    that the share of a sample depends on is the same for each sample of the group."""
    s, e = query.start_ms, query.end_ms
    nodes = store.table("nodes")
    sliced = nodes.filter(nodes.gpu_replicas > 1).select(
        sl_node=nodes.node_id, replicas=nodes.gpu_replicas.cast("float64")
    )
    even: dict[str, set[str]] = {}
    rows = scanned
    if store.arrow(sliced.limit(1)).num_rows:
        rows = _request_corrections(store, temps, u, scanned, sliced, query, even, sample_keys)
    # pods asking for a shared GPU on a node whose replicas nobody said
    wl = store.table("workloads")
    wl = wl.filter(
        (wl.gpu_resource == "nvidia.com/gpu.shared")
        & wl.node_id.notnull()
        & (wl.start_ms.fill_null(s) < e)
        & (wl.end_ms.fill_null(e) > s)
    )
    wl = wl.anti_join(sliced, wl.node_id == sliced.sl_node).select("node_id").distinct()
    for r in store.arrow(wl).to_pylist():
        even.setdefault(r["node_id"], set()).add(REPLICAS_UNKNOWN)
    return rows, {node: tuple(sorted(why)) for node, why in sorted(even.items())}


def _request_corrections(
    store: Store,
    temps: Temps,
    u: ir.Table,
    scanned: ir.Table,
    sliced: ir.Table,
    query: AllocationQuery,
    even: dict[str, set[str]],
    sample_keys: tuple[str, ...] = rollups.RAW.sample_keys,
) -> ir.Table:
    """The scan with the request-share corrections of the samples on `sliced` nodes added;
    the nodes where a sample stayed split evenly go into `even`, with why."""
    s = query.start_ms
    w = store.table("workloads").select(wl_id="workload_id", request="gpu_request")
    x = u.join(sliced, u.node_id == sliced.sl_node)
    x = x.left_join(w, x.workload_id == w.wl_id)
    x = x.select(*sample_keys, "workload_id", "held_req", "replicas", "request")
    # one row per holder of a sample (two processes of one pod on a GPU are two rows of
    # it): a pod's request counts once per GPU, and a roll-up, whose rows are per holder,
    # gives the same shares
    x = x.group_by([*sample_keys, "workload_id"]).aggregate(
        held_req=x.held_req.sum(), replicas=x.replicas.max(), request=x.request.max()
    )
    # per sample: its duration, the replicas its pods ask for, how many pods' are unknown
    keys = list(sample_keys)
    per = x.group_by(keys).aggregate(
        dur=x.held_req.sum(),
        wanted=x.request.sum(),
        unknown=(x.workload_id.notnull() & x.request.isnull()).ifelse(1, 0).sum(),
    )
    h = x.filter(x.workload_id.notnull())
    x = h.join(per, keys).select(
        h.ts_ms, h.node_id, h.workload_id, h.held_req, h.replicas, h.request, per.dur,
        per.wanted, per.unknown,
    )  # fmt: skip
    over = x.wanted > x.replicas + 1e-9
    by_request = (x.unknown == 0) & ~over
    new = _cast(_cast(x.dur, MS) * _cast(x.request / x.replicas, RATE), MS)
    delta = by_request.ifelse(_cast(new - x.held_req, MS), ibis.literal(Decimal(0), type=MS))
    step = step_start(x.ts_ms, s, query.step_ms) if query.stepwise else ibis.literal(s)
    fixes = temps.create(
        "alloc_request",
        x.group_by([step.cast("int64").name("step"), x.node_id, x.workload_id]).aggregate(
            delta=_cast(delta.sum(), MS),
            over=over.any(),
            unknown=(x.unknown > 0).any(),
        ),
    )
    zero_ms = ibis.literal(Decimal(0), type=MS)

    def shaped(t: ir.Table, workload: ir.Value, held: ir.Value, used: ir.Value) -> ir.Table:
        return t.select(
            step=_cast(t.step, "int64"),
            node_id=_cast(t.node_id, "string"),
            workload_id=_cast(workload, "string"),
            held=_cast(held, MS),
            used=_cast(used, MS),
        )

    idle = fixes.group_by(["step", "node_id"]).aggregate(held=-fixes.delta.sum())
    rows = ibis.union(
        shaped(scanned, scanned.workload_id, scanned.held, scanned.used),
        shaped(fixes, fixes.workload_id, fixes.delta, zero_ms),
        shaped(idle, ibis.null("string"), idle.held, zero_ms),
    )
    rows = rows.group_by(["step", "node_id", "workload_id"]).aggregate(
        held=_cast(rows.held.sum(), MS), used=_cast(rows.used.sum(), MS)
    )
    flagged = fixes.group_by("node_id").aggregate(
        over=fixes.over.any(), unknown=fixes.unknown.any()
    )
    flagged = flagged.filter(flagged.over | flagged.unknown)
    for r in store.arrow(flagged).to_pylist():
        if r["over"]:
            even.setdefault(r["node_id"], set()).add(MORE_PODS_THAN_REPLICAS)
        if r["unknown"]:
            even.setdefault(r["node_id"], set()).add(REQUEST_UNKNOWN)
    return rows


def step_start(ts: ir.IntegerValue, start: int, step_ms: int) -> ir.IntegerValue:
    return (ibis.literal(start) + ((ts - start) // step_ms) * step_ms).cast("int64")


class Temps:
    """Temporary tables for the intermediate results that several later steps read."""

    _counter = 0

    def __init__(self, store: Store):
        self.store = store
        self.names: list[str] = []

    def __enter__(self) -> Temps:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.names:
            self.store.con.drop_table(name, force=True)

    def create(self, prefix: str, expr: ir.Table, index: tuple[str, ...] = ()) -> ir.Table:
        Temps._counter += 1
        name = f"_{prefix}_{Temps._counter}"
        self.names.append(name)
        return self.store.create_temp(name, expr, index)

    def values(
        self, prefix: str, columns: tuple[tuple[str, str], ...], data: list[list[object]]
    ) -> ir.Table:
        """A temporary table of Python values (`Store.temp_values`), in place of a memtable."""
        name = self.store.temp_values(prefix, columns, data)
        self.names.append(name)
        return self.store.table(name)


def _allocate_from_scan(
    store: Store,
    temps: Temps,
    g: ir.Table,
    pres: ir.Table,
    p: ir.Table,
    query: AllocationQuery,
    rules: AttributionRules,
    served: ir.Table | None = None,
) -> AllocationResult:
    s = query.start_ms
    zero = ibis.literal(Decimal(0), type=UNITS)
    zero_ms = ibis.literal(Decimal(0), type=MS)

    # 2. each node's presence per step (its device-ms / its GPUs) and its asset cost
    pres = pres.join(p, pres.node_id == p.node_id).select(
        pres.step,
        pres.node_id,
        pres.dev,
        present_ms=_cast(pres.dev / p.gpu_count, MS),
        gpu_rate=p.gpu_rate,
        cpu_node_rate=p.cpu_node_rate,
        ram_node_rate=p.ram_node_rate,
        cpu_rate=p.cpu_rate,
        ram_rate=p.ram_rate,
        priced=p.priced,
    )
    pres = temps.create(
        "alloc_presence",
        pres.mutate(
            gpu_asset=_cast(pres.dev * pres.gpu_rate, UNITS),
            cpu_asset=_cast(pres.present_ms * pres.cpu_node_rate, UNITS),
            ram_asset=_cast(pres.present_ms * pres.ram_node_rate, UNITS),
        ),
        index=("node_id", "step"),  # each workload's steps are a range of its node's
    )
    per_node = store.arrow(
        pres.group_by(["node_id", "priced"]).aggregate(
            asset=(pres.gpu_asset + pres.cpu_asset + pres.ram_asset).sum(), gpu_ms=pres.dev.sum()
        )
    )
    priced_mask = per_node["priced"]
    asset = pc.sum(per_node.filter(priced_mask)["asset"]).as_py()
    asset_units = Decimal(asset) if asset is not None else Decimal(0)
    unpriced = per_node.filter(pc.invert(priced_mask)).select(["node_id", "gpu_ms"])

    # GPU money per holder (per node, and per step where steps are kept). Waste is the
    # held time not used, over the row's span: charged GPU cost x (1 - usage)
    gp = g.left_join(p, g.node_id == p.node_id)
    rate = gp.gpu_rate.fill_null(Decimal(0))
    gpu_rows = gp.select(
        "step",
        "node_id",
        "workload_id",
        gpu_ms=gp.held,
        used_ms=gp.workload_id.notnull().ifelse(gp.used, zero_ms),
        gpu_units=_cast(gp.held * rate, UNITS),
        cpu_units=zero,
        ram_units=zero,
        waste_units=gp.workload_id.notnull().ifelse(
            _cast(ibis.greatest(gp.held - gp.used, zero_ms) * rate, UNITS), zero
        ),
    )

    # 3. CPU and RAM by max(request, usage) for the time run, capped by node capacity
    cpu_rows = _cpu_ram_rows(store, temps, pres, query)
    if not query.stepwise and served is None:
        return _by_node_then_dims(store, temps, g, cpu_rows, p, query, rules, asset_units, unpriced)
    money = _cpu_money(cpu_rows, p)
    cpu_money = money.select(
        "step",
        "node_id",
        "workload_id",
        gpu_ms=zero_ms,
        used_ms=zero_ms,
        gpu_units=zero,
        cpu_units=money.cpu_units,
        ram_units=money.ram_units,
        waste_units=zero,
    )

    rows = ibis.union(gpu_rows, cpu_money)
    rows = rows.group_by(["step", "node_id", "workload_id"]).aggregate(
        gpu_ms=rows.gpu_ms.sum(),
        used_ms=rows.used_ms.sum(),
        gpu_units=rows.gpu_units.sum(),
        cpu_units=rows.cpu_units.sum(),
        ram_units=rows.ram_units.sum(),
        waste_units=rows.waste_units.sum(),
    )
    rows = rows.mutate(idle_units=zero)

    # 4. idle policy, then collapse the steps that the output does not keep: label
    #    lookups then run once per workload and node, not once per step
    if query.idle is not IdlePolicy.SEPARATE:
        rows = _share_idle(rows, query.idle)
    if query.stepwise and not query.per_step:
        rows = rows.group_by(["node_id", "workload_id"]).aggregate(
            step=ibis.literal(s).cast("int64"), **_sums(rows)
        )

    # 5. attribution and buckets
    rows = _attribute(store, temps, rows, p, rules, query.by, query.node_buckets, served)
    if query.team is not None:
        rows = rows.filter(rows.team == query.team)

    # 6. group
    keys = list(query.by) + (["step"] if query.per_step else [])
    return AllocationResult(_grouped(store, rows, keys), asset_units, unpriced)


def _grouped(store: Store, rows: ir.Table, keys: list[str]) -> pa.Table:
    """6. The rows' money summed per `keys` (in their order), with the utilisation signals
    they were measured by; one row of it all without keys."""
    metrics = {**_sums(rows), "signals": rows.util_signal.collect(distinct=True)}
    if keys:
        return store.arrow(rows.group_by(keys).aggregate(**metrics).order_by(keys))
    return store.arrow(rows.aggregate(**metrics))


def _by_node_then_dims(
    store: Store,
    temps: Temps,
    g: ir.Table,
    cpu_rows: ir.Table,
    p: ir.Table,
    query: AllocationQuery,
    rules: AttributionRules,
    asset_units: Decimal,
    unpriced: pa.Table,
) -> AllocationResult:
    """5.-6. where no step is kept and idle stays apart (no row needs another's money):
    each GPU row (node, holder) and CPU/RAM row is attributed as it is, summed per
    dimension and node, and only then priced. A node's GPU price is one rate, so its
    held and wasted time summed first and then multiplied give the same exact money as
    per workload (rate x sum = sum of rate x each), for a few hundred groups rather than
    once per workload."""
    zero = ibis.literal(Decimal(0), type=UNITS)
    zero_ms = ibis.literal(Decimal(0), type=MS)
    # a workload's GPU and CPU/RAM rows side by side (idle rows, of no workload, stay apart)
    c = cpu_rows.select(
        c_node="node_id",
        c_wl="workload_id",
        c_ms="ms",
        cpu_q="cpu_q",
        mem_q="mem_q",
        c_cpu="cpu_units",
        c_ram="ram_units",
    )
    x = g.outer_join(c, [g.node_id == c.c_node, g.workload_id == c.c_wl])
    held, used = x.held.fill_null(Decimal(0)), x.used.fill_null(Decimal(0))
    both = x.select(
        step=ibis.literal(query.start_ms).cast("int64"),
        node_id=ibis.coalesce(x.node_id, x.c_node),
        workload_id=ibis.coalesce(x.workload_id, x.c_wl),
        gpu_ms=_cast(held, MS),
        used_ms=x.workload_id.notnull().ifelse(_cast(used, MS), zero_ms),
        waste_ms=x.workload_id.notnull().ifelse(ibis.greatest(held - used, zero_ms), zero_ms),
        ms=x.c_ms.fill_null(0),
        cpu_q=x.cpu_q,
        mem_q=x.mem_q,
        cpu_units=_cast(x.c_cpu.fill_null(zero), UNITS),
        ram_units=_cast(x.c_ram.fill_null(zero), UNITS),
    ).view()  # a relation of its own: the joins below do not extend this one
    summed = ("gpu_ms", "used_ms", "waste_ms", "ms", "cpu_units", "ram_units")
    rows = _attribute(
        store, temps, both, p, rules, query.by, query.node_buckets,
        columns=(*summed, "cpu_q", "mem_q"), node="_node",
    )  # fmt: skip
    if query.team is not None:
        rows = rows.filter(rows.team == query.team)
    keys = list(query.by)
    per = rows.group_by([*keys, "_node", "cpu_q", "mem_q"]).aggregate(**_sums(rows, summed))
    per = per.left_join(p, per._node == p.node_id)
    rate = per.gpu_rate.fill_null(Decimal(0))
    cpu_rate, ram_rate = per.cpu_rate.fill_null(Decimal(0)), per.ram_rate.fill_null(Decimal(0))
    per = per.select(
        *keys,
        gpu_ms=per.gpu_ms,
        used_ms=per.used_ms,
        gpu_units=_cast(per.gpu_ms * rate, UNITS),
        cpu_units=_cast(per.cpu_units + _priced(per.ms, per.cpu_q, cpu_rate), UNITS),
        ram_units=_cast(per.ram_units + _priced(per.ms, per.mem_q, ram_rate), UNITS),
        idle_units=zero,
        waste_units=_cast(per.waste_ms * rate, UNITS),
        util_signal=per.util_signal,
    )
    return AllocationResult(_grouped(store, per, keys), asset_units, unpriced)


SUMMED = ("gpu_ms", "used_ms", "gpu_units", "cpu_units", "ram_units", "idle_units", "waste_units")


def _sums(rows: ir.Table, names: tuple[str, ...] = SUMMED) -> dict[str, ir.Value]:
    return {name: rows[name].sum() for name in names}


def _cpu_ram_rows(store: Store, temps: Temps, pres: ir.Table, query: AllocationQuery) -> ir.Table:
    """3. The CPU/RAM charges and idle: step, node_id, workload_id, ms, cpu_q, mem_q,
    cpu_units, ram_units. A row's money is its units plus `ms` of its `cpu_q` cores and
    `mem_q` GiB at its node's rates (`_priced`): where no node-step comes near its cap, a
    workload's is its time alone, priced once per kind of workload and node after it is
    attributed (a node's rate x a sum of times is the sum of each time's money)."""
    s, e, step_ms = query.start_ms, query.end_ms, query.step_ms
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
    # per-workload hourly rates first (one row per workload), then per step
    rates = pres.group_by("node_id").aggregate(
        cpu_rate=pres.cpu_rate.max(), ram_rate=pres.ram_rate.max()
    )
    cpu = ibis.greatest(w.cpu_request.fill_null(0), w.cpu_usage.fill_null(0))
    mem = ibis.greatest(w.mem_request_gib.fill_null(0), w.mem_usage_gib.fill_null(0))
    w = w.join(rates, w.node_id == rates.node_id).select(
        w.workload_id,
        w.node_id,
        start=w.start_ms.fill_null(s),
        end=w.end_ms.fill_null(e),
        cpu_q=cpu.cast("float64"),
        mem_q=mem.cast("float64"),
        cpu_wr=_rate(cpu, rates.cpu_rate),
        ram_wr=_rate(mem, rates.ram_rate),
        # the same in floating point, for `_near_cap` only
        cpu_f=cpu.cast("float64") * rates.cpu_rate.cast("float64"),
        ram_f=mem.cast("float64") * rates.ram_rate.cast("float64"),
    )
    # the steps each workload overlaps, from the step of its start to the step of its last
    # moment in the window (a job that ends before it starts runs no time)
    # (on times from the window's start, never negative here: integer remainders, where
    # `//` is a floor of a division in floating point on PostgreSQL)
    lo = ibis.greatest(w.start, ibis.literal(s)) - s
    hi = ibis.least(w.end, ibis.literal(e)) - 1 - s
    first, last = s + lo - lo % step_ms, s + hi - hi % step_ms
    w = w.filter(w.end > w.start).mutate(first=first.cast("int64"), last=last.cast("int64"))
    pr = pres.filter(pres.priced)
    got = None if query.stepwise else _whole_window_charges(store, w, pr, query)
    if got is not None:
        return ibis.union(*got)
    # the per-step path gives money alone: no time left to price
    return ibis.union(
        *(
            t.select(
                step=_cast(t.step, "int64"),
                node_id=_cast(t.node_id, "string"),
                workload_id=_cast(t.workload_id, "string"),
                ms=ibis.literal(0, type="int64"),
                cpu_q=ibis.null("float64"),
                mem_q=ibis.null("float64"),
                cpu_units=_cast(t.cpu_units, UNITS),
                ram_units=_cast(t.ram_units, UNITS),
            )
            for t in _step_charges(store, temps, w, pr, query)
        )
    )


def _rate(amount: ir.Value, unit_rate: ir.Value) -> ir.Value:
    """A workload's hourly rate: its cores (GiB) x the node's rate per core (GiB), exact to
    9 decimals."""
    return _cast(amount * unit_rate, RATE)


def _priced(ms: ir.Value, amount: ir.Value, unit_rate: ir.Value) -> ir.Value:
    """Money for `ms` of `amount` cores (GiB) at the node's rate: 0 where no amount."""
    zero = ibis.literal(Decimal(0), type=UNITS)
    money = _cast(_cast(ms, MS) * _rate(amount, unit_rate), UNITS)
    return amount.isnull().ifelse(zero, money)


def _cpu_money(cpu_rows: ir.Table, p: ir.Table) -> ir.Table:
    """The CPU/RAM rows as money alone (step, node_id, workload_id, cpu_units, ram_units):
    a row's money plus its time at its cores and GiB."""
    x = cpu_rows.left_join(p, cpu_rows.node_id == p.node_id)
    return x.select(
        step=x.step,
        node_id=x.node_id,
        workload_id=x.workload_id,
        cpu_units=_cast(x.cpu_units + _priced(x.ms, x.cpu_q, x.cpu_rate.fill_null(0)), UNITS),
        ram_units=_cast(x.ram_units + _priced(x.ms, x.mem_q, x.ram_rate.fill_null(0)), UNITS),
    )


def _step_charges(
    store: Store, temps: Temps, w: ir.Table, pr: ir.Table, query: AllocationQuery
) -> tuple[ir.Table, ir.Table]:
    """3. Each workload's CPU/RAM charge (per node and workload, and step where kept) and
    each node's CPU/RAM idle (the same, with no workload): the workload's time in each step
    of its node (and priced) x its rate, scaled down in a node-step whose wants exceed its
    CPU (RAM) cost; the rest of the node-step's cost is idle."""
    s, e, step_ms = query.start_ms, query.end_ms, query.step_ms
    # each workload's range of its node's steps, joined as one (on PostgreSQL by the
    # presence's index: Ibis's range().unnest() builds an array per workload there)
    j = w.join(pr, [w.node_id == pr.node_id, pr.step >= w.first, pr.step <= w.last])
    # each workload's time in each step its node is there (and priced). A want is that
    # time x the workload's rate: exact decimals, so a workload's wants sum to its rate x
    # its summed time, which a sum of integers gives quicker
    want = temps.create(
        "alloc_want",
        j.select(
            "step",
            "node_id",
            "workload_id",
            "cpu_wr",
            "ram_wr",
            ms=ibis.least(j.end, j.step + step_ms, ibis.literal(e))
            - ibis.greatest(j.start, j.step, ibis.literal(s)),
        ),
    )
    cpu_want = _cast(_cast(want.ms, MS) * want.cpu_wr, UNITS)
    ram_want = _cast(_cast(want.ms, MS) * want.ram_wr, UNITS)
    # a node-step whose wants exceed its CPU (RAM) cost scales them down to fit. Such
    # node-steps are few (often none)
    tot = want.group_by(["step", "node_id"]).aggregate(
        cpu_sum=cpu_want.sum(), ram_sum=ram_want.sum()
    )
    tot = temps.create(
        "alloc_totals",
        tot.join(pr, [tot.step == pr.step, tot.node_id == pr.node_id]).select(
            tot.step, tot.node_id, tot.cpu_sum, tot.ram_sum, pr.cpu_asset, pr.ram_asset
        ),
    )
    over = _over(tot)
    if not store.arrow(over.limit(1)).num_rows:
        # nothing over: each workload is charged its wants, and each node-step uses its total
        keys = ["step", "node_id", "workload_id"] if query.stepwise else ["node_id", "workload_id"]
        charged = want.group_by(keys).aggregate(
            ms=want.ms.sum(), cpu_wr=want.cpu_wr.max(), ram_wr=want.ram_wr.max()
        )
        charged = charged.select(
            step=charged.step if query.stepwise else ibis.literal(s).cast("int64"),
            node_id=charged.node_id,
            workload_id=charged.workload_id,
            cpu_units=_cast(_cast(charged.ms, MS) * charged.cpu_wr, UNITS),
            ram_units=_cast(_cast(charged.ms, MS) * charged.ram_wr, UNITS),
        )
        used = tot.select("step", "node_id", cpu=tot.cpu_sum, ram=tot.ram_sum)
    else:
        over = temps.create("alloc_over", over)
        k = want.left_join(over, [want.step == over.step, want.node_id == over.node_id])
        scaled = k.cpu_f.notnull()
        cpu_want, ram_want = (
            _cast(_cast(k.ms, MS) * k.cpu_wr, UNITS),
            _cast(_cast(k.ms, MS) * k.ram_wr, UNITS),
        )
        charged = k.select(
            step=k.step,
            node_id=k.node_id,
            workload_id=k.workload_id,
            cpu_units=scaled.ifelse(_cast(cpu_want * k.cpu_f, UNITS), cpu_want),
            ram_units=scaled.ifelse(_cast(ram_want * k.ram_f, UNITS), ram_want),
        )
        used = charged.group_by(["step", "node_id"]).aggregate(
            cpu=charged.cpu_units.sum(), ram=charged.ram_units.sum()
        )
        if not query.stepwise:
            charged = charged.group_by(["node_id", "workload_id"]).aggregate(
                step=ibis.literal(s).cast("int64"),
                cpu_units=charged.cpu_units.sum(),
                ram_units=charged.ram_units.sum(),
            )
    idle = pr.left_join(used, [pr.step == used.step, pr.node_id == used.node_id]).select(
        step=pr.step,
        node_id=pr.node_id,
        workload_id=ibis.null("string"),
        cpu_units=_cast(pr.cpu_asset - used.cpu.fill_null(0), UNITS),
        ram_units=_cast(pr.ram_asset - used.ram.fill_null(0), UNITS),
    )
    if not query.stepwise:
        idle = idle.group_by(["node_id", "workload_id"]).aggregate(
            step=ibis.literal(s).cast("int64"),
            cpu_units=idle.cpu_units.sum(),
            ram_units=idle.ram_units.sum(),
        )
    return charged, idle


def _over(tot: ir.Table) -> ir.Table:
    """The node-steps whose wants exceed their CPU (RAM) cost, with the factor that scales
    each down to fit (`tot`: step, node_id, cpu_sum, ram_sum, cpu_asset, ram_asset)."""
    return tot.filter((tot.cpu_sum > tot.cpu_asset) | (tot.ram_sum > tot.ram_asset)).select(
        tot.step,
        tot.node_id,
        cpu_f=(tot.cpu_sum > tot.cpu_asset).ifelse(
            tot.cpu_asset.cast("float64") / tot.cpu_sum.cast("float64"), 1.0
        ),
        ram_f=(tot.ram_sum > tot.ram_asset).ifelse(
            tot.ram_asset.cast("float64") / tot.ram_sum.cast("float64"), 1.0
        ),
    )


def _whole_window_charges(
    store: Store, w: ir.Table, pr: ir.Table, query: AllocationQuery
) -> tuple[ir.Table, ir.Table] | None:
    """3., where the output keeps no steps: `_step_charges`'s answer without a row per
    workload and step (a year's 107 k jobs are 415 k job-days), or None where a node-step
    comes near or over its cap (`_near_cap`: then only the per-step rows can scale its
    wants). A workload is charged its rate x its time in the node's priced steps: each
    step's place on the node's present time (the running sum of the present steps' lengths
    before it) gives the present time up to the job's start and up to its end. A job whose
    first or last step has no presence of its node (rare) is joined to its steps. A node's
    idle is its cost less its workloads' charges."""
    s, e, step_ms = query.start_ms, query.end_ms, query.step_ms
    lo = ibis.greatest(w.start, ibis.literal(s))
    hi = ibis.least(w.end, ibis.literal(e))
    jobs = w.select("node_id", "workload_id", "cpu_q", "mem_q", "first", "last", lo=lo, hi=hi)
    near = w.select("node_id", "first", "last", "cpu_f", "ram_f", lo=lo, hi=hi)
    if _near_cap(store, near, pr, query):
        return None
    # the node's present time before each of its priced steps
    length = ibis.least(pr.step + step_ms, ibis.literal(e)) - pr.step
    before = length.sum().over(ibis.cumulative_window(group_by=pr.node_id, order_by=pr.step))
    f = pr.select(f_node=pr.node_id, f_step=pr.step, f_at=before - length)
    g = f.select(l_node=f.f_node, l_step=f.f_step, l_at=f.f_at)
    x = jobs.left_join(f, [jobs.node_id == f.f_node, jobs.first == f.f_step])
    x = x.left_join(g, [x.node_id == g.l_node, x.last == g.l_step])
    placed = x.filter(x.f_at.notnull() & x.l_at.notnull())
    placed = placed.select(
        node_id=placed.node_id,
        workload_id=placed.workload_id,
        cpu_q=placed.cpu_q,
        mem_q=placed.mem_q,
        ms=(placed.l_at + placed.hi - placed.last) - (placed.f_at + placed.lo - placed.first),
    )
    # the rest: a job with a step of no presence at either end, joined to its steps
    rest = x.filter(x.f_at.isnull() | x.l_at.isnull())
    j = rest.join(pr, [rest.node_id == pr.node_id, pr.step >= rest.first, pr.step <= rest.last])
    stepped = j.select(
        node_id=j.node_id,
        workload_id=j.workload_id,
        cpu_q=j.cpu_q,
        mem_q=j.mem_q,
        ms=ibis.least(j.hi, j.step + step_ms) - ibis.greatest(j.lo, j.step),
    )
    stepped = stepped.group_by(["node_id", "workload_id"]).aggregate(
        cpu_q=stepped.cpu_q.max(), mem_q=stepped.mem_q.max(), ms=stepped.ms.sum()
    )
    times = ibis.union(placed, stepped)  # a row per workload
    zero = ibis.literal(Decimal(0), type=UNITS)
    charged = times.select(
        step=ibis.literal(s).cast("int64"),
        node_id=_cast(times.node_id, "string"),
        workload_id=_cast(times.workload_id, "string"),
        ms=_cast(times.ms, "int64"),
        cpu_q=times.cpu_q,
        mem_q=times.mem_q,
        cpu_units=zero,
        ram_units=zero,
    )
    # nothing over: a node's idle is its CPU (RAM) cost less what its workloads are charged
    # (their times summed per node and kind of workload, then priced)
    kinds = times.group_by(["node_id", "cpu_q", "mem_q"]).aggregate(ms=times.ms.sum())
    node = pr.group_by("node_id").aggregate(
        cpu_rate=pr.cpu_rate.max(),
        ram_rate=pr.ram_rate.max(),
        cpu=pr.cpu_asset.sum(),
        ram=pr.ram_asset.sum(),
    )
    k = kinds.join(node, kinds.node_id == node.node_id)
    k = k.select(
        k.node_id,
        cpu=_priced(k.ms, k.cpu_q, k.cpu_rate),
        ram=_priced(k.ms, k.mem_q, k.ram_rate),
    )
    used = k.group_by("node_id").aggregate(cpu=k.cpu.sum(), ram=k.ram.sum())
    idle = node.left_join(used, node.node_id == used.node_id).select(
        step=ibis.literal(s).cast("int64"),
        node_id=_cast(node.node_id, "string"),
        workload_id=ibis.null("string"),
        ms=ibis.literal(0, type="int64"),
        cpu_q=ibis.null("float64"),
        mem_q=ibis.null("float64"),
        cpu_units=_cast(node.cpu - used.cpu.fill_null(0), UNITS),
        ram_units=_cast(node.ram - used.ram.fill_null(0), UNITS),
    )
    return charged, idle


# a node-step whose wants come within this of its CPU (RAM) cost, as a share of the cost
# or in cost units (1 ms x $1/h), is checked exactly (`_step_charges`)
NEAR_SHARE = 1e-9
NEAR_UNITS = 1000.0


def _near_cap(store: Store, jobs: ir.Table, pr: ir.Table, query: AllocationQuery) -> bool:
    """Whether any node-step's CPU (RAM) wants come near or over its cost. A node-step's
    wants are the rates of the workloads that run on from it to a later step (a running
    sum over the node's steps of each workload's rate, added at its first step and taken
    away at its last) times the step, plus two parts per workload: its time in its last
    step, less its time before its start in its first (a workload of one step gets both
    there: its time). In floating point: the answer only decides whether the exact
    per-step path runs, and a margin (`NEAR_SHARE`, `NEAR_UNITS`) some 10^6 times any
    rounding of these sums sends every close call there."""
    step_ms = query.step_ms

    def rows(k: ir.Value, ms: ir.Value, sign: int) -> ir.Table:
        """A workload's row at step `k`: `ms` at its rate, and its rate added (1) or taken
        away (-1) from the running sum."""
        cpu, ram = jobs.cpu_f, jobs.ram_f
        return jobs.select(
            node_id=jobs.node_id,
            k=_cast(k, "int64"),
            cpu_p=ms.cast("float64") * cpu,
            ram_p=ms.cast("float64") * ram,
            cpu_d=cpu * sign,
            ram_d=ram * sign,
        )

    ev = ibis.union(
        rows(jobs.first, jobs.first - jobs.lo, 1), rows(jobs.last, jobs.hi - jobs.last, -1)
    )
    ev = ev.group_by(["node_id", "k"]).aggregate(
        **{c: ev[c].sum() for c in ("cpu_p", "ram_p", "cpu_d", "ram_d")}
    )
    # beside the node's present steps (a workload's row at a step of no presence still
    # moves the running sum)
    grid = pr.select(
        g_node=pr.node_id,
        g_k=pr.step,
        cpu_cap=pr.cpu_asset.cast("float64"),
        ram_cap=pr.ram_asset.cast("float64"),
    )
    x = ev.outer_join(grid, [ev.node_id == grid.g_node, ev.k == grid.g_k])
    ev = x.select(
        node_id=ibis.coalesce(x.node_id, x.g_node),
        k=ibis.coalesce(x.k, x.g_k),
        **{c: x[c].fill_null(0.0) for c in ("cpu_p", "ram_p", "cpu_d", "ram_d")},
        cpu_cap=x.cpu_cap,
        ram_cap=x.ram_cap,
    ).view()
    running = ibis.cumulative_window(group_by=ev.node_id, order_by=ev.k)
    ev = ev.mutate(cpu_in=ev.cpu_d.sum().over(running), ram_in=ev.ram_d.sum().over(running))
    ev = ev.filter(ev.cpu_cap.notnull())

    def near(part: ir.Value, rate_in: ir.Value, cap: ir.Value) -> ir.BooleanValue:
        # wants of none are exactly 0 here (every term is 0), and never over a cost
        wants = part + rate_in * float(step_ms)
        return (wants > 0) & (wants > cap - ibis.greatest(cap * NEAR_SHARE, NEAR_UNITS))

    close = ev.filter(near(ev.cpu_p, ev.cpu_in, ev.cpu_cap) | near(ev.ram_p, ev.ram_in, ev.ram_cap))
    return bool(store.arrow(close.select("k").limit(1)).num_rows)


def _share_idle(rows: ir.Table, policy: IdlePolicy) -> ir.Table:
    """Move each node-step's idle cost onto the workloads of that node-step."""
    zero = ibis.literal(Decimal(0), type=UNITS)
    zero_ms = ibis.literal(Decimal(0), type=MS)
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
        # a proportional split is a ratio, worked in floating point: its rounding is some
        # 1e-3 cost units, where a cent is 36,000 (ms x $/h)
        def share(
            idle_part: ir.NumericValue, mine: ir.NumericValue, total: ir.NumericValue
        ) -> ir.Value:
            ratio = mine.cast("float64") / total.cast("float64")
            return (total > 0).ifelse(_cast(idle_part.cast("float64") * ratio, UNITS), zero)

        add_g = share(ig, j.gpu_units, j.sg)
        add_c = share(ic, j.cpu_units, j.sc)
        add_r = share(ir_, j.ram_units, j.sr)
    else:
        add_g = _cast(ig / j.n, UNITS)
        add_c = _cast(ic / j.n, UNITS)
        add_r = _cast(ir_ / j.n, UNITS)
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
        idle_units=_cast(add_g + add_c + add_r, UNITS),
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
        used_ms=zero_ms,
        gpu_units=_cast(keep_g, UNITS),
        cpu_units=_cast(keep_c, UNITS),
        ram_units=_cast(keep_r, UNITS),
        waste_units=zero,
        idle_units=zero,
    )
    return ibis.union(shared, remaining)


def _attribute(
    store: Store,
    temps: Temps,
    rows: ir.Table,
    p: ir.Table,
    rules: AttributionRules,
    by: tuple[str, ...],
    node_buckets: bool = False,
    served: ir.Table | None = None,
    columns: tuple[str, ...] = ("step", *SUMMED),
    node: str | None = None,
) -> ir.Table:
    """Each row's dimensions (`by`, and team) and bucket, with its `columns`, the node's
    utilisation signal, and (where `node` names a column) its node."""
    w = store.table("workloads").select("workload_id", "namespace", "labels")
    ns = store.table("namespaces").select("namespace", ns_labels="labels")
    j = rows.left_join(w, rows.workload_id == w.workload_id)
    j = j.left_join(ns, j.namespace == ns.namespace)
    j = j.left_join(p, j.node_id == p.node_id)
    team_map = None
    if rules.namespace_teams:
        team_map = temps.values(
            "alloc_teams",
            (("mapped_namespace", "VARCHAR"), ("mapped_team", "VARCHAR")),
            [list(rules.namespace_teams), list(rules.namespace_teams.values())],
        )
        j = j.left_join(team_map, j.namespace == team_map.mapped_namespace)

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
    if served is not None:
        j = _split_by_served(j.mutate(label_model=_labelled_model(j.labels, rules)), served)
    dims: dict[str, ir.Value] = {}
    wanted = set(by) | ({"team"} if "team" not in by else set())
    for dim in wanted:
        if dim in ATTRIBUTED_DIMENSIONS:
            keys = rules.keys_for(dim)
            candidates = [_label(j.labels, k) for k in keys]
            if dim == "model" and served is not None:
                candidates = [j.label_model, j.sv_model]  # the pod's own, then its counters'
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
        dims[dim] = value if dim == "node" and node_buckets else bucket.fill_null(value)
    if node is not None:
        dims[node] = j.node_id
    return j.select(*columns, util_signal=j.util_signal, **dims)


def _label(labels: ir.MapValue, key: str) -> ir.StringValue:
    return labels.get(key).nullif("")


def _labelled_model(labels: ir.MapValue, rules: AttributionRules) -> ir.StringValue:
    """The model a workload's own labels name, or NULL."""
    return ibis.coalesce(*(_label(labels, k) for k in rules.keys_for("model")))


def _split_by_served(j: ir.Table, served: ir.Table) -> ir.Table:
    """Each row of a workload whose labels name no model, once per model its serving
    counters name, its GPU time and money multiplied by that model's share; the workload's
    last model takes the row's amount less the others' (so the parts add up exactly)."""
    j = j.mutate(_rid=ibis.row_number())
    j = j.left_join(served, [j.workload_id == served.sv_workload, j.label_model.isnull()])
    split = j.sv_model.notnull() & (j.models > 1)
    row = ibis.window(group_by=j._rid)
    parts: dict[str, ir.Value] = {}
    for name in SUMMED:
        kind = MS if name.endswith("_ms") else UNITS
        whole = j[name]
        part = _cast(whole.cast("float64") * j.frac, kind)
        others = j.last.ifelse(ibis.literal(Decimal(0), type=kind), part).sum().over(row)
        parts[name] = split.ifelse(j.last.ifelse(_cast(whole - others, kind), part), whole)
    return j.mutate(**parts)


def _served_used(
    store: Store, g: ir.Table, served: ir.Table, rules: AttributionRules
) -> list[dict[str, object]]:
    """The workloads that held GPU time in the window and whose model came from their
    serving counters (their labels name none), with each model's share: for the report."""
    w = store.table("workloads").select(wl="workload_id", labels="labels")
    held = g.filter(g.workload_id.notnull()).select("workload_id").distinct()
    x = served.join(held, served.sv_workload == held.workload_id)
    x = x.left_join(w, x.sv_workload == w.wl)
    x = x.filter(_labelled_model(x.labels, rules).isnull())
    x = x.select(
        workload=x.sv_workload, model=x.sv_model, frac=x.frac, basis=x.basis, models=x.models
    )
    return store.arrow(x.order_by(["workload", "model"])).to_pylist()
