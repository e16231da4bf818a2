"""FOCUS cost and usage datasets (1.0 to 1.3; CSV or Parquet) -> FOCUS-shaped cost lines.

Names become snake_case; money is exact (DECIMAL(38,12)); charge and billing periods are
UTC milliseconds, half-open; `Tags` (JSON) is a map; a literal `NULL` is null. Columns
renamed between versions are read under either name (`ProviderName` / `ServiceProviderName`,
`PublisherName` / `HostProviderName`...). Files stream through in batches, so memory stays
bounded whatever their size.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa

from aifinops.errors import InputError

MONEY = pa.decimal128(38, 12)
TAGS = pa.map_(pa.string(), pa.string())
COST_LINES = pa.schema(
    [
        ("provider", pa.string()),
        ("billing_account_id", pa.string()),
        ("billing_account_name", pa.string()),
        ("sub_account_id", pa.string()),
        ("sub_account_name", pa.string()),
        ("billing_currency", pa.string()),
        ("billing_period_start_ms", pa.int64()),
        ("billing_period_end_ms", pa.int64()),
        ("charge_period_start_ms", pa.int64()),
        ("charge_period_end_ms", pa.int64()),
        ("charge_category", pa.string()),
        ("charge_class", pa.string()),
        ("charge_description", pa.string()),
        ("service_name", pa.string()),
        ("service_category", pa.string()),
        ("region_id", pa.string()),
        ("resource_id", pa.string()),
        ("resource_name", pa.string()),
        ("resource_type", pa.string()),
        ("sku_id", pa.string()),
        ("pricing_category", pa.string()),
        ("pricing_unit", pa.string()),
        ("pricing_quantity", MONEY),
        ("consumed_quantity", MONEY),
        ("consumed_unit", pa.string()),
        ("billed_cost", MONEY),
        ("effective_cost", MONEY),
        ("list_cost", MONEY),
        ("contracted_cost", MONEY),
        ("commitment_discount_id", pa.string()),
        ("tags", TAGS),
        ("line_hash", pa.string()),
        ("source", pa.string()),
    ]
)
# our column -> FOCUS names, newest first
NAMES: dict[str, tuple[str, ...]] = {
    "provider": ("ServiceProviderName", "ProviderName"),
    "billing_account_id": ("BillingAccountId",),
    "billing_account_name": ("BillingAccountName",),
    "sub_account_id": ("SubAccountId",),
    "sub_account_name": ("SubAccountName",),
    "billing_currency": ("BillingCurrency",),
    "billing_period_start_ms": ("BillingPeriodStart",),
    "billing_period_end_ms": ("BillingPeriodEnd",),
    "charge_period_start_ms": ("ChargePeriodStart",),
    "charge_period_end_ms": ("ChargePeriodEnd",),
    "charge_category": ("ChargeCategory",),
    "charge_class": ("ChargeClass",),
    "charge_description": ("ChargeDescription",),
    "service_name": ("ServiceName",),
    "service_category": ("ServiceCategory",),
    "region_id": ("RegionId", "Region"),
    "resource_id": ("ResourceId",),
    "resource_name": ("ResourceName",),
    "resource_type": ("ResourceType",),
    "sku_id": ("SkuId",),
    "pricing_category": ("PricingCategory",),
    "pricing_unit": ("PricingUnit",),
    "pricing_quantity": ("PricingQuantity",),
    "consumed_quantity": ("ConsumedQuantity",),
    "consumed_unit": ("ConsumedUnit",),
    "billed_cost": ("BilledCost",),
    "effective_cost": ("EffectiveCost",),
    "list_cost": ("ListCost",),
    "contracted_cost": ("ContractedCost",),
    "commitment_discount_id": ("CommitmentDiscountId",),
    "tags": ("Tags",),
}
REQUIRED = ("billed_cost", "charge_period_start_ms", "charge_period_end_ms", "billing_currency")
_TIMES = {k for k in NAMES if k.endswith("_ms")}
_MONEY = {f.name for f in COST_LINES if f.type == MONEY}
_Q = Decimal("0.000000000001")


@dataclass
class FocusRead:
    rows: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    periods: set[tuple[str, str, int]] = field(default_factory=set)  # provider, account, start
    seen: set[str] = field(default_factory=set)  # line hashes: a line twice counts once


def _null(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip()
        return None if v == "" or v.upper() == "NULL" else v
    return value


def _time(value: Any) -> int | None:
    value = _null(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _money(value: Any) -> Decimal | None:
    value = _null(value)
    if value is None:
        return None
    return Decimal(str(value)).quantize(_Q)


def _tags(value: Any) -> list[tuple[str, str]] | None:
    value = _null(value)
    if value is None:
        return None
    if isinstance(value, dict):
        items = value.items()
    else:
        doc = json.loads(str(value))
        items = doc.items() if isinstance(doc, dict) else []
    return [(str(k), "" if v is None else str(v)) for k, v in items]


def read_focus(
    path: Path, batch_rows: int = 50_000, read: FocusRead | None = None
) -> Iterator[pa.Table]:
    """Batches of cost lines; problems (bad rows, duplicates) are collected in `read`."""
    state = read if read is not None else FocusRead()
    if not path.is_file():
        raise InputError("no such file", where=str(path))
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        columns = _columns(pf.schema_arrow.names, str(path))
        line = 1
        for batch in pf.iter_batches(batch_size=batch_rows):
            yield _table(batch.to_pylist(), columns, str(path), state, line)
            line += batch.num_rows
        return
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError("empty file", where=str(path)) from None
        columns = _columns(header, str(path))
        width = len(header)
        chunk: list[dict[str, Any]] = []
        number = 1
        for row in reader:
            number += 1
            if len(row) != width:
                state.problems.append(
                    f"{path}:{number}: {len(row)} fields where the header has {width} "
                    "(cut mid-row?); skipped"
                )
                continue
            chunk.append(dict(zip(header, row, strict=True)))
            if len(chunk) >= batch_rows:
                yield _table(chunk, columns, str(path), state, number - len(chunk) + 1)
                chunk = []
        if chunk:
            yield _table(chunk, columns, str(path), state, number - len(chunk) + 1)


def _columns(header: list[str], where: str) -> dict[str, str]:
    present = set(header)
    columns = {}
    for ours, names in NAMES.items():
        found = next((n for n in names if n in present), None)
        if found:
            columns[ours] = found
    missing = [NAMES[c][0] for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(
            f"not a FOCUS dataset: no {', '.join(missing)} column",
            where=where,
            hint="for an AWS CUR, Azure or OCI export use `ingest cur|azure|oci`",
        )
    return columns


def _table(
    rows: Any, columns: dict[str, str], where: str, state: FocusRead, first_line: int
) -> pa.Table:
    out: dict[str, list[Any]] = {f.name: [] for f in COST_LINES}
    seen = state.seen
    for i, raw in enumerate(rows):
        line = first_line + i
        try:
            values = {}
            for ours, theirs in columns.items():
                v = raw.get(theirs)
                if ours in _TIMES:
                    values[ours] = _time(v)
                elif ours in _MONEY:
                    values[ours] = _money(v)
                elif ours == "tags":
                    values[ours] = _tags(v)
                else:
                    values[ours] = _null(v)
        except (ValueError, InvalidOperation, json.JSONDecodeError) as error:
            state.problems.append(f"{where}:{line}: {error}; skipped")
            continue
        digest = hashlib.sha256(
            json.dumps([raw.get(c) for c in sorted(columns.values())], default=str).encode()
        ).hexdigest()
        if digest in seen:
            state.duplicates += 1
            continue
        seen.add(digest)
        values["line_hash"] = digest
        values["source"] = Path(where).name
        for name in out:
            out[name].append(values.get(name))
        state.rows += 1
        start = values.get("billing_period_start_ms") or values.get("charge_period_start_ms")
        state.periods.add(
            (values.get("provider") or "", values.get("billing_account_id") or "", start or 0)
        )
    return pa.table(out, schema=COST_LINES)
