"""Named writes and reads of the fact tables: samples, nodes, workloads, namespaces, energy,
serving counters and imported allocations. Every statement against these tables outside
the allocation engine is here, so that another engine needs only this module changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from aifinops.store import rollups
from aifinops.store.db import Store
from aifinops.tables import (
    COUNTERS,
    GPU_ENERGY,
    NAMESPACES,
    NODES,
    WORKLOADS,
    rows_table,
)

FOREVER_MS = 2**62  # an open end: a job that has not ended


# -- GPU samples --------------------------------------------------------------------------
def replace_usage(store: Store, usage: pa.Table | str, start_ms: int, end_ms: int) -> int:
    """The samples of the nodes in `usage` (an Arrow table or a stage table's name) replace
    what those nodes had in [start, end). Call inside a transaction."""
    if isinstance(usage, str):
        nodes = [r[0] for r in store.raw(f'SELECT DISTINCT node_id FROM "{usage}" ORDER BY 1')]
        store.delete_usage(nodes, start_ms, end_ms)
        return store.write_usage_from(usage)
    nodes = sorted(set(usage.column("node_id").to_pylist()))
    store.delete_usage(nodes, start_ms, end_ms)
    return store.write_usage(usage)


def usage_nodes(store: Store, usage: pa.Table | str) -> list[str]:
    if isinstance(usage, str):
        return [r[0] for r in store.raw(f'SELECT DISTINCT node_id FROM "{usage}" ORDER BY 1')]
    return sorted(set(usage.column("node_id").to_pylist()))


def usage_extent(store: Store) -> tuple[int, int] | None:
    """The first and last sample instants in the store, or None when it holds none."""
    row = store.raw("SELECT min(ts_ms), max(ts_ms) FROM gpu_usage")[0]
    return None if row[0] is None else (int(row[0]), int(row[1]))


def usage_end(store: Store) -> int | None:
    """Where the newest samples end (their instant plus their duration: the rows of one
    sample hold its duration in sum), or None."""
    row = store.raw(
        "SELECT max(ts_ms + CAST(d AS BIGINT)) FROM (SELECT ts_ms, sum(held_req) AS d "
        "FROM gpu_usage WHERE ts_ms >= (SELECT max(ts_ms) FROM gpu_usage) - 86400000 "
        "GROUP BY ts_ms, node_id, gpu_id) AS samples"
    )[0]
    return None if row[0] is None else int(row[0])


def newest_samples(store: Store, lookback_ms: int) -> list[dict[str, Any]]:
    """Per node and GPU, its newest sample, where that lies within `lookback_ms` of the
    newest sample in the store: when, how long, the busy time, and who held it."""
    rows = store.raw(
        """
        WITH recent AS (
            SELECT node_id, gpu_id, max(ts_ms) AS ts_ms FROM gpu_usage
            WHERE ts_ms >= (SELECT max(ts_ms) FROM gpu_usage) - ?
            GROUP BY node_id, gpu_id
        )
        SELECT u.node_id, u.gpu_id, u.ts_ms, n.gpu_model,
               CAST(sum(u.held_req) AS DOUBLE), CAST(sum(u.used) AS DOUBLE),
               list(DISTINCT u.workload_id ORDER BY u.workload_id)
                   FILTER (WHERE u.workload_id IS NOT NULL)
        FROM gpu_usage u
        JOIN recent r ON u.node_id = r.node_id AND u.gpu_id = r.gpu_id AND u.ts_ms = r.ts_ms
        LEFT JOIN nodes n ON n.node_id = u.node_id
        GROUP BY u.node_id, u.gpu_id, u.ts_ms, n.gpu_model
        ORDER BY u.node_id, u.gpu_id
        """,
        [lookback_ms],
    )
    keys = ("node", "gpu", "ts_ms", "gpu_model", "duration_ms", "busy_ms", "holders")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def utilization_grid(
    store: Store, start_ms: int, end_ms: int, step_ms: int
) -> list[dict[str, Any]]:
    """Per node, GPU and step of [start, end): the share of the sampled time the GPU was
    busy (used over sampled), its sampled hours and the node's GPU model; the heatmap's
    cells. Steps start at multiples of `step_ms` from the epoch."""
    rows = store.raw(
        """
        SELECT u.node_id, u.gpu_id, u.bucket, n.gpu_model,
               CAST(sum(u.held_req) AS DOUBLE), CAST(sum(u.used) AS DOUBLE)
        FROM (SELECT node_id, gpu_id, ts_ms - (ts_ms % ?) AS bucket, held_req, used
              FROM gpu_usage WHERE ts_ms >= ? AND ts_ms < ?) u
        LEFT JOIN nodes n ON n.node_id = u.node_id
        GROUP BY u.node_id, u.gpu_id, u.bucket, n.gpu_model
        ORDER BY u.node_id, u.gpu_id, u.bucket
        """,
        [step_ms, start_ms, end_ms],
    )
    keys = ("node", "gpu", "bucket_ms", "gpu_model", "sampled_ms", "busy_ms")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def claim_unowned(store: Store, node: str, workload: str, start: int, end: int | None) -> int:
    """Give the node's samples in [start, end) that no telemetry tied to an owner (no holder,
    or an unknown process `NODE/pid-N`) to `workload`; how many rows were given."""
    params = [node, start, end if end is not None else FOREVER_MS, f"{node}/pid-%"]
    unowned = (
        "node_id = ? AND ts_ms >= ? AND ts_ms < ? AND (workload_id IS NULL OR workload_id LIKE ?)"
    )
    found = int(store.raw(f"SELECT count(*) FROM gpu_usage WHERE {unowned}", params)[0][0])
    if found:  # the roll-ups' holders change with them
        update = f"UPDATE gpu_usage SET workload_id = ? WHERE {unowned}"
        rollups.claim_usage(store, node, params[1], params[2], update, [workload, *params])
    return found


# -- energy and serving counters -------------------------------------------------------------
def replace_energy(
    store: Store, rows: Sequence[dict[str, Any]] | str, start_ms: int, end_ms: int
) -> None:
    """Energy readings (rows, or a stage table's name) replace those the same sources made
    of the same nodes in [start, end) — another source's readings of them stay (an
    nvidia-smi log's memory readings do not wipe the agent's energy counters). Call
    inside a transaction."""
    if isinstance(rows, str):
        pairs = store.raw(f'SELECT DISTINCT node_id, source FROM "{rows}"')
    else:
        pairs = sorted({(r["node_id"], r.get("source")) for r in rows}, key=str)
    if not pairs:
        return
    lo, hi = _energy_span(store, rows, start_ms, end_ms)
    change = rollups.energy_before(store, [p[0] for p in pairs], lo, hi)
    store.raw(
        "DELETE FROM gpu_energy WHERE ts_ms >= ? AND ts_ms < ? AND EXISTS (SELECT 1 FROM "
        "(SELECT unnest(CAST(? AS VARCHAR[])) AS n, unnest(CAST(? AS VARCHAR[])) AS s) k "
        "WHERE k.n = gpu_energy.node_id "
        "AND k.s = coalesce(gpu_energy.source, ''))",
        [start_ms, end_ms, [p[0] for p in pairs], [p[1] or "" for p in pairs]],
    )
    if isinstance(rows, str):
        store.raw(f'INSERT INTO gpu_energy SELECT * FROM "{rows}"')
    else:
        store.insert_arrow("gpu_energy", rows_table(rows, GPU_ENERGY))
    rollups.energy_after(store, change)


def _energy_span(
    store: Store, rows: Sequence[dict[str, Any]] | str, start_ms: int, end_ms: int
) -> tuple[int, int]:
    """[start, end) widened to the readings that replace it."""
    if isinstance(rows, str):
        first, last = store.raw(f'SELECT min(ts_ms), max(ts_ms) FROM "{rows}"')[0]
    else:
        first, last = min(r["ts_ms"] for r in rows), max(r["ts_ms"] for r in rows)
    if first is None:
        return start_ms, end_ms
    return min(start_ms, int(first)), max(end_ms, int(last) + 1)


def replace_counters(
    store: Store, rows: Sequence[dict[str, Any]], span: tuple[str, int, int] | None = None
) -> None:
    """Serving counters; with `span` (source, start, end), they replace what that source
    said in [start, end) (a pull of a window read again)."""
    if span is not None:
        store.raw(
            "DELETE FROM serving_counters WHERE source = ? AND ts_ms >= ? AND ts_ms < ?",
            list(span),
        )
    if rows:
        store.insert_arrow("serving_counters", rows_table(rows, COUNTERS))


def workload_uids(store: Store) -> dict[str, str]:
    """Pod UID -> workload id, for the node agent's cgroup lookups."""
    return dict(store.raw("SELECT uid, workload_id FROM workloads WHERE uid IS NOT NULL"))


# -- imported allocations (OpenCost) --------------------------------------------------------
def replace_allocations(store: Store, table: pa.Table) -> None:
    """Allocations replace those with the same source, name and window."""
    store.delete_keys("external_allocations", table, ("source", "name", "start_ms", "end_ms"))
    store.insert_arrow("external_allocations", table)


def allocations_in(store: Store, source: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Imported allocations of `source` that overlap [start, end)."""
    t = store.table("external_allocations")
    t = t.filter((t.source == source) & (t.start_ms < end_ms) & (t.end_ms > start_ms))
    return store.arrow(t).to_pylist()


def allocations_extent(store: Store, source: str) -> tuple[int, int] | None:
    row = store.raw(
        "SELECT min(start_ms), max(end_ms) FROM external_allocations WHERE source = ?", [source]
    )[0]
    return None if row[0] is None else (int(row[0]), int(row[1]))


# -- nodes, workloads, namespaces -----------------------------------------------------------
def nodes(store: Store) -> pa.Table:
    return store.arrow(store.table("nodes"))


def node_column(store: Store, column: str) -> dict[str, Any]:
    """node_id -> one column of the nodes table."""
    if column not in NODES.names:
        raise KeyError(column)
    return dict(store.raw(f'SELECT node_id, "{column}" FROM nodes'))


def instance_types(store: Store) -> set[tuple[str, str]]:
    """(provider, instance type) of every node that has one."""
    found = store.raw("SELECT provider, instance_type FROM nodes WHERE instance_type IS NOT NULL")
    return {(r[0] or "", r[1]) for r in found}


def upsert_namespaces(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        store.upsert_arrow("namespaces", rows_table(rows, NAMESPACES), "namespace")


def merge_nodes(store: Store, new: Sequence[dict[str, Any]], prefer_new: bool = False) -> None:
    """Upsert nodes, keeping what another source already knew (see `merge_rows`); the GPU
    count only grows within one source (a scrape may miss a GPU)."""
    _merge(store, "nodes", "node_id", new, NODES, prefer_new, keep_max=("gpu_count",))


def merge_workloads(store: Store, new: Sequence[dict[str, Any]], prefer_new: bool = False) -> None:
    """Upsert workloads; within one source their interval only widens."""
    _merge(store, "workloads", "workload_id", new, WORKLOADS, prefer_new,
           keep_min=("start_ms",), keep_max=("end_ms",))  # fmt: skip


def replace_workloads(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Write workloads as given (a generated fleet): no merge with what was there."""
    if rows:
        store.upsert_arrow("workloads", rows_table(rows, WORKLOADS), "workload_id")


def merge_rows(
    prev: dict[str, Any],
    row: dict[str, Any],
    prefer_new: bool,
    keep_min: tuple[str, ...] = (),
    keep_max: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One stored fact row and a new one about the same thing, as one row.

    A value the new row lacks keeps the old; with `prefer_new` (inventory: what the cluster
    says now) a new value wins, else the old one does. Intervals (`keep_min`/`keep_max`)
    widen only between rows of the same source: a pod's own start and end (Kubernetes) win
    over when its processes were seen on the GPU. Labels are merged, the preferred side's
    value winning per key."""
    out = dict(prev)
    same_source = prev.get("source") == row.get("source")
    for name, value in row.items():
        if name == "labels" or value is None:
            continue
        if same_source and name in keep_min and prev.get(name) is not None:
            out[name] = min(prev[name], value)
        elif same_source and name in keep_max and prev.get(name) is not None:
            out[name] = max(prev[name], value)
        elif prefer_new or prev.get(name) is None:
            out[name] = value
    old_labels, new_labels = dict(prev.get("labels") or []), dict(row.get("labels") or {})
    out["labels"] = {**old_labels, **new_labels} if prefer_new else {**new_labels, **old_labels}
    return out


def _merge(
    store: Store,
    table: str,
    key: str,
    new: Sequence[dict[str, Any]],
    schema: pa.Schema,
    prefer_new: bool,
    keep_min: tuple[str, ...] = (),
    keep_max: tuple[str, ...] = (),
) -> None:
    if not new:
        return
    t = store.table(table)
    old = {r[key]: r for r in store.arrow(t.filter(t[key].isin([r[key] for r in new]))).to_pylist()}
    merged = [
        row
        if row[key] not in old
        else merge_rows(old[row[key]], row, prefer_new, keep_min, keep_max)
        for row in new
    ]
    store.upsert_arrow(table, rows_table(merged, schema), key)
