"""Builders for the fact tables sources produce (their shapes are in `aifinops.tables`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aifinops.tables import (  # noqa: F401 - the shapes, for the sources
    ALLOCATIONS,
    COUNTERS,
    GPU_ENERGY,
    GPU_USAGE,
    LABELS,
    NAMESPACES,
    NODES,
    WORKLOADS,
    rows_table,
)

MICRO = 1_000_000  # held/used are carried as integer micro-milliseconds until stored


def micro_to_decimal(values: np.ndarray[Any, Any]) -> pa.Array:
    """Integer micro-units -> decimal128(18, 6) with the same digits, without Python objects."""
    ints = np.ascontiguousarray(values, dtype=np.int64)
    words = np.empty((len(ints), 2), dtype=np.int64)
    words[:, 0] = ints
    words[:, 1] = np.where(ints < 0, -1, 0)
    return pa.Array.from_buffers(
        pa.decimal128(18, 6), len(ints), [None, pa.py_buffer(words.tobytes())]
    )


def usage_table(
    ts_ms: np.ndarray[Any, Any],
    node_id: Sequence[str] | pa.Array,
    gpu_id: Sequence[str] | pa.Array,
    workload_id: Sequence[str | None] | pa.Array,
    held_req_u: np.ndarray[Any, Any],
    held_use_u: np.ndarray[Any, Any],
    used_u: np.ndarray[Any, Any],
) -> pa.Table:
    return pa.table(
        [
            pa.array(ts_ms, pa.int64()),
            pa.array(node_id, pa.string()) if not isinstance(node_id, pa.Array) else node_id,
            pa.array(gpu_id, pa.string()) if not isinstance(gpu_id, pa.Array) else gpu_id,
            (
                pa.array(workload_id, pa.string())
                if not isinstance(workload_id, pa.Array)
                else workload_id
            ),
            micro_to_decimal(held_req_u),
            micro_to_decimal(held_use_u),
            micro_to_decimal(used_u),
        ],
        schema=GPU_USAGE,
    )


@dataclass
class SampleFacts:
    """What a telemetry read gives the store: GPU samples with holders, the nodes and
    workloads it saw, energy readings, the span it covers and what was wrong with it."""

    usage: pa.Table  # GPU_USAGE
    nodes: list[dict[str, Any]]
    workloads: list[dict[str, Any]]
    energy: list[dict[str, Any]]
    start_ms: int
    end_ms: int
    notes: list[str] = field(default_factory=list)
    last_ts_ms: int = 0  # the newest sample's start: a re-sent batch replaces [start, last]


class UsageRows:
    """GPU sample rows gathered one by one (a scrape, an agent record), then one table."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.node: list[str] = []
        self.gpu: list[str] = []
        self.holder: list[str | None] = []
        self.req: list[int] = []
        self.use: list[int] = []
        self.used: list[int] = []

    def add(
        self,
        ts_ms: int,
        node: str,
        gpu: str,
        holder: str | None,
        held_req_u: int,
        used_u: int,
        held_use_u: int | None = None,
    ) -> None:
        """One row; held and used in micro-ms; `held_use_u` defaults to the request share."""
        self.ts.append(ts_ms)
        self.node.append(node)
        self.gpu.append(gpu)
        self.holder.append(holder)
        self.req.append(held_req_u)
        self.use.append(held_req_u if held_use_u is None else held_use_u)
        self.used.append(used_u)

    def table(self) -> pa.Table:
        ints = [np.array(x, dtype=np.int64) for x in (self.ts, self.req, self.use, self.used)]
        return usage_table(ints[0], self.node, self.gpu, self.holder, ints[1], ints[2], ints[3])
