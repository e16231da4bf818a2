"""The columns of the stored fact tables, as Arrow schemas: what the sources write and the
store keeps. Neutral ground: both `sources/` and `store/` import it, neither imports the
other. `tests/test_schema.py` checks each against the table its migrations create."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

LABELS = pa.map_(pa.string(), pa.string())

GPU_USAGE = pa.schema(
    [
        ("ts_ms", pa.int64()),
        ("node_id", pa.string()),
        ("gpu_id", pa.string()),
        ("workload_id", pa.string()),
        ("held_req", pa.decimal128(18, 6)),
        ("held_use", pa.decimal128(18, 6)),
        ("used", pa.decimal128(18, 6)),
    ]
)

NODES = pa.schema(
    [
        ("node_id", pa.string()),
        ("provider", pa.string()),
        ("region", pa.string()),
        ("zone", pa.string()),
        ("instance_type", pa.string()),
        ("capacity_type", pa.string()),
        ("gpu_model", pa.string()),
        ("gpu_count", pa.int32()),
        ("cpu_cores", pa.float64()),
        ("memory_gib", pa.float64()),
        ("mig_strategy", pa.string()),
        ("gpu_replicas", pa.int32()),
        ("util_signal", pa.string()),
        ("resource_id", pa.string()),
        ("labels", LABELS),
        ("source", pa.string()),
    ]
)

WORKLOADS = pa.schema(
    [
        ("workload_id", pa.string()),
        ("kind", pa.string()),
        ("namespace", pa.string()),
        ("name", pa.string()),
        ("node_id", pa.string()),
        ("controller", pa.string()),
        ("start_ms", pa.int64()),
        ("end_ms", pa.int64()),
        ("gpu_request", pa.float64()),
        ("gpu_resource", pa.string()),
        ("cpu_request", pa.float64()),
        ("mem_request_gib", pa.float64()),
        ("cpu_usage", pa.float64()),
        ("mem_usage_gib", pa.float64()),
        ("labels", LABELS),
        ("source", pa.string()),
        ("uid", pa.string()),
    ]
)

GPU_ENERGY = pa.schema(
    [
        ("ts_ms", pa.int64()),
        ("node_id", pa.string()),
        ("gpu_id", pa.string()),
        ("energy_mj", pa.float64()),
        ("power_w", pa.float64()),
        ("fb_used_mib", pa.float64()),
        ("source", pa.string()),
    ]
)

COUNTERS = pa.schema(
    [
        ("ts_ms", pa.int64()),
        ("workload_id", pa.string()),
        ("server", pa.string()),
        ("model", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("source", pa.string()),
    ]
)

ALLOCATIONS = pa.schema(
    [
        ("source", pa.string()),
        ("name", pa.string()),
        ("start_ms", pa.int64()),
        ("end_ms", pa.int64()),
        ("cluster", pa.string()),
        ("node_id", pa.string()),
        ("namespace", pa.string()),
        ("pod", pa.string()),
        ("container", pa.string()),
        ("controller", pa.string()),
        ("labels", LABELS),
        ("namespace_labels", LABELS),
        ("gpu_hours", pa.float64()),
        ("gpu_cost", pa.float64()),
        ("cpu_cost", pa.float64()),
        ("ram_cost", pa.float64()),
        ("other_cost", pa.float64()),
        ("total_cost", pa.float64()),
    ]
)

NAMESPACES = pa.schema([("namespace", pa.string()), ("labels", LABELS)])


def rows_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a small fact table (nodes, workloads) from dicts; missing keys are null."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    for f in schema:
        if pa.types.is_map(f.type):
            cols[f.name] = [list((v or {}).items()) for v in cols[f.name]]
    return pa.table(cols, schema=schema)
