"""Arrow types as DuckDB SQL types: one mapping for the schemas that the sources write and
the store keeps (both run DuckDB DDL or casts from an Arrow schema)."""

from __future__ import annotations

import pyarrow as pa


def sql_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type, for the types our fact schemas use."""
    if pa.types.is_map(t):
        return f"MAP({sql_type(t.key_type)}, {sql_type(t.item_type)})"
    if pa.types.is_list(t):
        return f"{sql_type(t.value_type)}[]"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    simple = {
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.int16(): "SMALLINT",
        pa.int8(): "TINYINT",
        pa.float64(): "DOUBLE",
        pa.float32(): "FLOAT",
        pa.bool_(): "BOOLEAN",
    }
    if t in simple:
        return simple[t]
    raise TypeError(f"no DuckDB type for Arrow {t}")
