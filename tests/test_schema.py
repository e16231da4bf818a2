"""Each stored fact table's Arrow schema (what the sources write) against the table its
migrations create (what the store keeps): the same columns, in the same order, of the same
types. Types are compared as DuckDB spells them, each side normalised by DuckDB itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest

from aifinops import tables
from aifinops.arrow_sql import sql_type
from aifinops.sources.bills.engine import COST_LINES
from aifinops.store.db import Store

DECLARED = {
    "gpu_usage": tables.GPU_USAGE,
    "nodes": tables.NODES,
    "workloads": tables.WORKLOADS,
    "gpu_energy": tables.GPU_ENERGY,
    "serving_counters": tables.COUNTERS,
    "external_allocations": tables.ALLOCATIONS,
    "namespaces": tables.NAMESPACES,
    "cost_lines": COST_LINES,
}
# the store's own bookkeeping, which no source writes
BOOKKEEPING = {"schema_migrations", "ingest_log", "node_presence", "source_state", "price_cache",
               "api_tokens", "audit_log", "budgets", "budget_periods", "budget_alerts",
               "alert_deliveries", "findings", "finding_events", "anomaly_alerts",
               "bill_restatements", "leases"}  # fmt: skip
# the roll-ups of the samples (store/rollups.py), written only from the samples
BOOKKEEPING |= {f"{t}_{g}" for t in ("gpu_usage", "node_presence", "gpu_energy")
                for g in ("hourly", "daily")}  # fmt: skip


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    migrated = Store(":memory:")
    yield migrated
    migrated.close()


def stored_columns(store: Store, table: str) -> list[tuple[str, str]]:
    return [
        (str(name), str(kind))
        for name, kind in store.raw(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? ORDER BY ordinal_position",
            [table],
        )
    ]


def declared_columns(store: Store, schema: pa.Schema) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each field: `sql_type`'s DDL text as DuckDB prints it back."""
    return [
        (f.name, store.raw(f"SELECT typeof(CAST(NULL AS {sql_type(f.type)}))")[0][0])
        for f in schema
    ]


def differences(store: Store, table: str, schema: pa.Schema) -> list[str]:
    stored, declared = stored_columns(store, table), declared_columns(store, schema)
    out = [
        f"column {i}: stored {s}, declared {d}"
        for i, (s, d) in enumerate(zip(stored, declared, strict=False))
        if s != d
    ]
    out += [f"only stored: {c}" for c in stored[len(declared) :]]
    out += [f"only declared: {c}" for c in declared[len(stored) :]]
    return out


@pytest.mark.parametrize("table", sorted(DECLARED))
def test_declared_schema_is_the_stored_table(store: Store, table: str) -> None:
    assert stored_columns(store, table), f"the migrations create no table {table}"
    assert differences(store, table, DECLARED[table]) == []


def test_every_fact_table_is_declared(store: Store) -> None:
    made = {r[0] for r in store.raw("SELECT table_name FROM information_schema.tables")}
    assert made - BOOKKEEPING == set(DECLARED)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.set(1, pa.field(s.field(1).name, pa.int64())),  # a type
        lambda s: s.set(1, pa.field("renamed", s.field(1).type)),  # a name
        lambda s: pa.schema([s.field(1), s.field(0), *list(s)[2:]]),  # the order
        lambda s: s.append(pa.field("extra", pa.string())),  # a column more
        lambda s: s.remove(len(s) - 1),  # a column fewer
        lambda s: s.set(4, pa.field(s.field(4).name, pa.decimal128(18, 5))),  # a scale
    ],
    ids=["type", "name", "order", "extra", "missing", "decimal-scale"],
)
def test_a_differing_column_is_caught(
    store: Store, change: Callable[[pa.Schema], pa.Schema]
) -> None:
    assert differences(store, "gpu_usage", change(tables.GPU_USAGE)) != []
