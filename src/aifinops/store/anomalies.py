"""The store's anomalies: which were alerted (each once, by its stable id), and the tokens
each model served per step (the denominator of cost per 1M tokens)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from aifinops.store.db import Store
from aifinops.store.units import TOKENS, _increases


def alerted(store: Store, ids: Iterable[str]) -> set[str]:
    wanted = list(ids)
    if not wanted:
        return set()
    rows = store.raw("SELECT id FROM anomaly_alerts WHERE list_contains(?, id)", [wanted])
    return {str(r[0]) for r in rows}


def mark_alerted(store: Store, row: dict[str, Any]) -> bool:
    """Record an anomaly as alerted; False where it already was (nothing changes)."""
    done = store.raw(
        "INSERT INTO anomaly_alerts (id, metric, scope, step_ms, fired_ms, event) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id",
        [row["id"], row["metric"], row["scope"], row["step_ms"], row["fired_ms"], row["event"]],
    )
    return bool(done)


def tokens_by_step(store: Store, start_ms: int, end_ms: int, step_ms: int) -> pa.Table:
    """step (its start, ms), model, tokens: the prompt and generation tokens counted."""
    c = _increases(store, start_ms, end_ms)
    c = c.filter(c.metric.isin(list(TOKENS)) & c.model.notnull())
    step = start_ms + ((c.ts_ms - start_ms) // step_ms) * step_ms
    return store.arrow(
        c.group_by(step=step.cast("int64"), model=c.model)
        .aggregate(tokens=c.inc.sum())
        .order_by(["step", "model"])
    )
