"""Counter increases in a window (requests, tokens, serving time), as Ibis expressions."""

from __future__ import annotations

import ibis
import pyarrow as pa

from aifinops.store.db import Store


def counter_increases(store: Store, start_ms: int, end_ms: int) -> pa.Table:
    """model, metric, increase: per series (pod, server, model, metric), the sum of the
    increases between consecutive samples whose later sample lies in [start, end). A drop
    is a counter reset: the new value is the increase. A series' first sample is its
    baseline (what it counted before is not known to fall in the window)."""
    c = store.table("serving_counters")
    c = c.filter(c.ts_ms < end_ms)
    w = ibis.window(group_by=[c.workload_id, c.server, c.model, c.metric], order_by=c.ts_ms)
    prev = c.value.lag().over(w)
    inc = prev.isnull().ifelse(0.0, (c.value >= prev).ifelse(c.value - prev, c.value))
    c = c.mutate(inc=inc)
    c = c.filter(c.ts_ms >= start_ms)
    return store.arrow(
        c.group_by(["model", "metric"])
        .aggregate(increase=c.inc.sum())
        .order_by(["model", "metric"])
    )


def energy_increases(
    store: Store, start_ms: int | None = None, end_ms: int | None = None
) -> pa.Table:
    """node_id, gpu_id, energy_mj, span_ms: per GPU, the energy counter's increase between
    consecutive readings whose later one lies in [start, end) (a drop is a reset: the new
    reading is the increase), and the time those readings span."""
    e = store.table("gpu_energy")
    e = e.filter(e.energy_mj.notnull())
    if end_ms is not None:
        e = e.filter(e.ts_ms < end_ms)
    w = ibis.window(group_by=[e.node_id, e.gpu_id], order_by=e.ts_ms)
    prev = e.energy_mj.lag().over(w)
    prev_ts = e.ts_ms.lag().over(w)
    e = e.mutate(
        inc=prev.isnull().ifelse(
            0.0, (e.energy_mj >= prev).ifelse(e.energy_mj - prev, e.energy_mj)
        ),
        dt=prev_ts.isnull().ifelse(0, e.ts_ms - prev_ts),
    )
    if start_ms is not None:
        e = e.filter(e.ts_ms >= start_ms)
    return store.arrow(
        e.group_by(["node_id", "gpu_id"])
        .aggregate(energy_mj=e.inc.sum(), span_ms=e.dt.sum())
        .order_by(["node_id", "gpu_id"])
    )
