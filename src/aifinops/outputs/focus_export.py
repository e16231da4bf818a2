"""The allocated chargeback as a FOCUS 1.2 cost and usage dataset (CSV or Parquet).

One row per workload (or bucket: `__idle__`, `__unallocated__`...) and step: its GPU, CPU
and RAM cost as BilledCost / EffectiveCost (the chargeback amount), ListCost and
ContractedCost (at the prices allocation used; scaled to the bill with reconciliation),
GPU-hours as the pricing and consumed quantity, the team as the sub account, and
`x_`-prefixed columns for team, project, model, namespace, node, GPU-hours, GPU efficiency,
waste and idle cost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from aifinops.core.model import BUCKETS, IDLE, UNALLOCATED
from aifinops.core.windows import from_ms, month_bounds
from aifinops.errors import cannot_write
from aifinops.outputs.csv_cells import write_csv

MONEY = pa.decimal128(38, 12)
TS = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class ExportRow:
    """One chargeback line: a workload's cost in one step."""

    start_ms: int
    end_ms: int
    key: dict[str, str]
    gpu_hours: Decimal
    cost: Decimal
    list_cost: Decimal
    idle_cost: Decimal
    waste_cost: Decimal
    gpu_efficiency: Decimal | None


SCHEMA = pa.schema(
    [
        ("AvailabilityZone", pa.string()),
        ("BilledCost", MONEY),
        ("BillingAccountId", pa.string()),
        ("BillingAccountName", pa.string()),
        ("BillingAccountType", pa.string()),
        ("BillingCurrency", pa.string()),
        ("BillingPeriodEnd", TS),
        ("BillingPeriodStart", TS),
        ("CapacityReservationId", pa.string()),
        ("CapacityReservationStatus", pa.string()),
        ("ChargeCategory", pa.string()),
        ("ChargeClass", pa.string()),
        ("ChargeDescription", pa.string()),
        ("ChargeFrequency", pa.string()),
        ("ChargePeriodEnd", TS),
        ("ChargePeriodStart", TS),
        ("CommitmentDiscountCategory", pa.string()),
        ("CommitmentDiscountId", pa.string()),
        ("CommitmentDiscountName", pa.string()),
        ("CommitmentDiscountQuantity", MONEY),
        ("CommitmentDiscountStatus", pa.string()),
        ("CommitmentDiscountType", pa.string()),
        ("CommitmentDiscountUnit", pa.string()),
        ("ConsumedQuantity", MONEY),
        ("ConsumedUnit", pa.string()),
        ("ContractedCost", MONEY),
        ("ContractedUnitPrice", MONEY),
        ("EffectiveCost", MONEY),
        ("InvoiceId", pa.string()),
        ("InvoiceIssuerName", pa.string()),
        ("ListCost", MONEY),
        ("ListUnitPrice", MONEY),
        ("PricingCategory", pa.string()),
        ("PricingCurrency", pa.string()),
        ("PricingCurrencyContractedUnitPrice", MONEY),
        ("PricingCurrencyEffectiveCost", MONEY),
        ("PricingCurrencyListUnitPrice", MONEY),
        ("PricingQuantity", MONEY),
        ("PricingUnit", pa.string()),
        ("ProviderName", pa.string()),
        ("PublisherName", pa.string()),
        ("RegionId", pa.string()),
        ("RegionName", pa.string()),
        ("ResourceId", pa.string()),
        ("ResourceName", pa.string()),
        ("ResourceType", pa.string()),
        ("ServiceCategory", pa.string()),
        ("ServiceName", pa.string()),
        ("ServiceSubcategory", pa.string()),
        ("SkuId", pa.string()),
        ("SkuMeter", pa.string()),
        ("SkuPriceDetails", pa.string()),
        ("SkuPriceId", pa.string()),
        ("SubAccountId", pa.string()),
        ("SubAccountName", pa.string()),
        ("SubAccountType", pa.string()),
        ("Tags", pa.string()),
        ("x_CloudProvider", pa.string()),
        ("x_Team", pa.string()),
        ("x_Project", pa.string()),
        ("x_Model", pa.string()),
        ("x_Namespace", pa.string()),
        ("x_Node", pa.string()),
        ("x_GpuHours", MONEY),
        ("x_GpuEfficiency", pa.float64()),
        ("x_WasteCost", MONEY),
        ("x_IdleCost", MONEY),
    ]
)
_Q = Decimal("0.000000000001")
TAG_DIMENSIONS = ("team", "project", "model", "environment", "cost_center", "owner", "namespace")
PROVIDERS = {"aws": "AWS", "gcp": "Google Cloud", "azure": "Microsoft", "oci": "Oracle"}


def focus_table(
    rows: Iterable[ExportRow], *, currency: str, account_id: str, account_name: str
) -> pa.Table:
    out: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for r in rows:
        # bucket names stand in for unknown values of the other dimensions: none in FOCUS
        k = {d: v for d, v in r.key.items() if v and v not in BUCKETS}
        workload = r.key.get("workload") or UNALLOCATED
        bucket = workload in BUCKETS
        team = k.get("team")
        provider = PROVIDERS.get((k.get("provider") or "").lower(), k.get("provider") or None)
        begin, finish = month_bounds(from_ms(r.start_ms))
        qty = r.gpu_hours.quantize(_Q)
        cost = r.cost.quantize(_Q)
        listed = r.list_cost.quantize(_Q)
        unit = (listed / qty).quantize(_Q) if qty else None
        tags = {d: k[d] for d in TAG_DIMENSIONS if k.get(d)}
        region = k.get("region") or None
        values: dict[str, Any] = {
            "BilledCost": cost,
            "BillingAccountId": account_id,
            "BillingAccountName": account_name,
            "BillingAccountType": "Chargeback",
            "BillingCurrency": currency,
            "BillingPeriodEnd": finish,
            "BillingPeriodStart": begin,
            "ChargeCategory": "Usage",
            "ChargeDescription": (
                f"{workload}: idle capacity of node {k.get('node')}"
                if workload == IDLE
                else f"{workload}: GPU, CPU and RAM held on node {k.get('node')}"
            ),
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": from_ms(r.end_ms),
            "ChargePeriodStart": from_ms(r.start_ms),
            "ConsumedQuantity": qty,
            "ConsumedUnit": "Hours",
            "ContractedCost": listed,
            "ContractedUnitPrice": unit,
            "EffectiveCost": cost,
            "InvoiceIssuerName": account_name,
            "ListCost": listed,
            "ListUnitPrice": unit,
            "PricingCategory": "Standard",
            "PricingCurrency": currency,
            "PricingCurrencyContractedUnitPrice": unit,
            "PricingCurrencyEffectiveCost": cost,
            "PricingCurrencyListUnitPrice": unit,
            "PricingQuantity": qty,
            "PricingUnit": "Hours",
            # the platform team provides and invoices the chargeback: the cloud (if any) is
            # x_CloudProvider, so BilledCost is not a third party's (FOCUS BilledCost-C-005)
            "ProviderName": account_name,
            "PublisherName": account_name,
            "InvoiceId": f"{account_id}-{begin:%Y-%m}",
            "x_CloudProvider": provider,
            "RegionId": region,
            "RegionName": region,
            "ResourceId": None if bucket else workload,
            "ResourceName": None if bucket else workload.rsplit("/", 1)[-1],
            "ResourceType": None if bucket else "Workload",
            "ServiceCategory": "Compute",
            "ServiceName": "GPU compute",
            "ServiceSubcategory": "Other (Compute)",
            "SkuId": k.get("instance_type") or k.get("gpu_model") or "gpu-hour",
            "SkuMeter": "GPU-hours",
            "SkuPriceDetails": None,
            "SkuPriceId": f"{k.get('node')}/gpu-hour",
            "SubAccountId": team or UNALLOCATED,
            "SubAccountName": team or UNALLOCATED,
            "SubAccountType": "Team",
            "Tags": json.dumps(tags, sort_keys=True),
            "x_Team": team,
            "x_Project": k.get("project"),
            "x_Model": k.get("model"),
            "x_Namespace": k.get("namespace"),
            "x_Node": k.get("node"),
            "x_GpuHours": qty,
            "x_GpuEfficiency": float(r.gpu_efficiency) if r.gpu_efficiency is not None else None,
            "x_WasteCost": r.waste_cost.quantize(_Q),
            "x_IdleCost": r.idle_cost.quantize(_Q),
        }
        for name, column in out.items():
            column.append(values.get(name))
    return pa.table(out, schema=SCHEMA)


def write_table(table: pa.Table, path: Path) -> None:
    """Parquet for `.parquet` (typed, as it is), else CSV: ISO 8601 UTC times (`Z`-suffixed),
    amounts in plain decimals, text escaped where a spreadsheet would run it (`csv_cells`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, path)
            return
        _write_csv(table, path)
    except OSError as error:
        raise cannot_write(path, error) from error


def _write_csv(table: pa.Table, path: Path) -> None:
    import pyarrow.compute as pc

    cols = []
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_timestamp(f.type):
            col = pc.strftime(col.cast(pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        cols.append(col)
    with path.open("w", encoding="utf-8", newline="") as out:
        write_csv(out, table.column_names, pa.table(cols, names=table.column_names).to_pylist())
