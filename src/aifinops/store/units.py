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
    return store.con.to_pyarrow(
        c.group_by(["model", "metric"])
        .aggregate(increase=c.inc.sum())
        .order_by(["model", "metric"])
    )
