"""FOCUS cost and usage datasets (1.0 to 1.3; CSV or Parquet) -> FOCUS-shaped cost lines.

Names become snake_case; money is exact (DECIMAL(38,12)); charge and billing periods are
UTC milliseconds, half-open; `Tags` (JSON) is a map; a literal `NULL` is null. Columns
renamed between versions are read under either name (`ProviderName` / `ServiceProviderName`,
`Region` / `RegionId`...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from aifinops.sources.bills import engine as bills
from aifinops.sources.bills.engine import COST_LINES, BillRead, Header, json_tags, money, ms

__all__ = ["COST_LINES", "FORMAT", "BillRead", "read_focus"]

# our column -> FOCUS names, newest first
NAMES: dict[str, tuple[str, ...]] = {
    "provider": ("ServiceProviderName", "ProviderName", "Provider"),
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
_SIGNATURE = ("BilledCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd")


def _recognise(header: Header) -> bool:
    return all(n in header.types for n in _SIGNATURE)


def _expressions(header: Header, options: dict[str, Any]) -> dict[str, str]:
    out = {}
    for ours, names in NAMES.items():
        col = header.col(*names)
        if ours.endswith("_ms"):
            out[ours] = ms(col)
        elif ours in {"pricing_quantity", "consumed_quantity"} or ours.endswith("_cost"):
            out[ours] = money(col)
        elif ours == "tags":
            found = header.find("Tags")
            is_map = bool(found) and header.types[found].startswith("MAP")
            out[ours] = bills.quote(found) if found and is_map else json_tags(col)
        else:
            out[ours] = col
    return out


TITLE = "a FOCUS dataset (BilledCost, BillingCurrency, ChargePeriodStart, ChargePeriodEnd)"
FORMAT = bills.register(bills.BillFormat("focus", TITLE, _recognise, _expressions))


def read_focus(
    path: Path, batch_rows: int = 100_000, read: BillRead | None = None
) -> Iterator[pa.Table]:
    return bills.read_bill(path, FORMAT, batch_rows=batch_rows, read=read)
