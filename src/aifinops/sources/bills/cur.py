"""AWS Cost and Usage Reports -> FOCUS-shaped cost lines: legacy CUR (`lineItem/UnblendedCost`
columns; CSV, gzipped CSV or Parquet) and CUR 2.0 (`line_item_unblended_cost`, with
`resource_tags` and `product` as maps; Parquet or CSV).

The correspondences follow the FinOps Foundation's conversion rules for CUR: BilledCost is
the net unblended cost where there is one; EffectiveCost is the amortised cost (a Savings
Plan or reservation's effective cost on the usage it covers, the unused part of a
commitment on its fee line, nothing on negations and upfront fees); ListCost is the public
on-demand cost; tags are the `resourceTags/user:*` (or `resource_tags`) values.
"""

from __future__ import annotations

import re
from typing import Any

from aifinops.sources.bills import engine as bills
from aifinops.sources.bills.engine import Header, case, column_tags, literal, money, ms

CHARGE_CATEGORY = {
    "Usage": "Usage",
    "DiscountedUsage": "Usage",
    "SavingsPlanCoveredUsage": "Usage",
    "SavingsPlanNegation": "Usage",
    "BundledDiscount": "Usage",
    "Discount": "Usage",
    "PrivateRateDiscount": "Usage",
    "EdpDiscount": "Usage",
    "DistributorDiscount": "Usage",
    "Tax": "Tax",
    "Fee": "Purchase",
    "RIFee": "Purchase",
    "SavingsPlanUpfrontFee": "Purchase",
    "SavingsPlanRecurringFee": "Purchase",
    "Credit": "Credit",
    "Refund": "Credit",
}
PRICING_CATEGORY = {
    "On-Demand": "Standard",
    "OnDemand": "Standard",
    "Reserved": "Committed",
    "Reserved Instances": "Committed",
    "Savings Plan": "Committed",
    "Spot": "Dynamic",
    "Spot Instances": "Dynamic",
    "Dedicated Hosts": "Standard",
}


def cur2_name(legacy: str) -> str:
    """`lineItem/UnblendedCost` -> `line_item_unblended_cost` (CUR 2.0's static columns)."""
    group, _, name = legacy.partition("/")

    def snake(text: str) -> str:
        text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
        return text.lower()

    return f"{snake(group)}_{snake(name)}"


class _Cur:
    """Finds a legacy column under its legacy name, its CUR 2.0 name, or in the 2.0 maps."""

    def __init__(self, header: Header):
        self.header = header

    def find(self, legacy: str) -> str | None:
        return self.header.find(legacy, cur2_name(legacy))

    def col(self, legacy: str) -> str:
        found = self.find(legacy)
        if found:
            return bills.quote(found)
        group = legacy.partition("/")[0]
        if group == "product" and "product" in self.header.types:
            key = cur2_name(legacy).removeprefix("product_")
            return f"element_at(product, {literal(key)})[1]"
        return "NULL"


def _recognise(header: Header) -> bool:
    cur = _Cur(header)
    return bool(cur.find("lineItem/UnblendedCost") and cur.find("lineItem/UsageStartDate"))


def _expressions(header: Header, options: dict[str, Any]) -> dict[str, str]:
    c = _Cur(header).col
    kind = c("lineItem/LineItemType")
    unblended = money(c("lineItem/UnblendedCost"))
    billed = f"coalesce({money(c('lineItem/NetUnblendedCost'))}, {unblended})"
    sp_effective = money(
        f"coalesce({c('savingsPlan/NetSavingsPlanEffectiveCost')}, "
        f"{c('savingsPlan/SavingsPlanEffectiveCost')})"
    )
    ri_effective = money(
        f"coalesce({c('reservation/NetEffectiveCost')}, {c('reservation/EffectiveCost')})"
    )
    zero = "CAST(0 AS DECIMAL(38, 12))"

    def m(legacy: str) -> str:
        return f"coalesce({money(c(legacy))}, {zero})"

    effective = (
        f"CASE {kind} "
        f"WHEN 'SavingsPlanCoveredUsage' THEN {sp_effective} "
        f"WHEN 'SavingsPlanRecurringFee' THEN "
        f"{m('savingsPlan/TotalCommitmentToDate')} - {m('savingsPlan/UsedCommitment')} "
        f"WHEN 'SavingsPlanNegation' THEN {zero} "
        f"WHEN 'SavingsPlanUpfrontFee' THEN {zero} "
        f"WHEN 'DiscountedUsage' THEN {ri_effective} "
        f"WHEN 'RIFee' THEN {m('reservation/UnusedAmortizedUpfrontFeeForBillingPeriod')} + "
        f"{m('reservation/UnusedRecurringFee')} "
        f"ELSE CASE WHEN {kind} = 'Fee' AND coalesce({c('reservation/ReservationARN')}, '') "
        f"<> '' THEN {zero} ELSE {billed} END END"
    )
    amount = money(c("lineItem/UsageAmount"))
    listed = (
        f"coalesce({money(c('pricing/publicOnDemandCost'))}, "
        f"{money(c('pricing/publicOnDemandRate'))} * {amount})"
    )
    usage_type = c("lineItem/UsageType")
    term = f"coalesce({c('product/PurchaseOption')}, {c('pricing/term')})"
    pricing = (
        f"CASE WHEN {usage_type} LIKE '%SpotUsage%' THEN 'Dynamic' "
        f"WHEN {kind} IN ('DiscountedUsage', 'SavingsPlanCoveredUsage') THEN 'Committed' "
        f"ELSE {case(term, PRICING_CATEGORY)} END"
    )
    code = c("lineItem/ProductCode")
    tags = column_tags(header, ("resourceTags/user:", "resourceTags/", "resource_tags_user_"))
    if "resource_tags" in header.types:
        raw = bills.quote("resource_tags")
        if header.types["resource_tags"].startswith("MAP"):
            tags = (
                f"map_from_entries(list_transform(map_entries({raw}), lambda e: "
                f"{{'k': regexp_replace(e.key, '^user[_:]', ''), 'v': e.value}}))"
            )
        else:
            tags = bills.json_tags(raw)
    product_name = c("product/ProductName")
    return {
        "provider": "'AWS'",
        "billing_account_id": c("bill/PayerAccountId"),
        "billing_account_name": c("bill/PayerAccountName"),
        "sub_account_id": c("lineItem/UsageAccountId"),
        "sub_account_name": c("lineItem/UsageAccountName"),
        "billing_currency": c("lineItem/CurrencyCode"),
        "billing_period_start_ms": ms(c("bill/BillingPeriodStartDate")),
        "billing_period_end_ms": ms(c("bill/BillingPeriodEndDate")),
        "charge_period_start_ms": ms(c("lineItem/UsageStartDate")),
        "charge_period_end_ms": ms(c("lineItem/UsageEndDate")),
        "charge_category": case(kind, CHARGE_CATEGORY),
        "charge_class": f"CASE WHEN {c('bill/BillType')} = 'Refund' THEN 'Correction' END",
        "charge_description": c("lineItem/LineItemDescription"),
        "service_name": f"coalesce({product_name}, {code})",
        "service_category": "coalesce(aws_services.service_category, 'Other')",
        "region_id": f"coalesce({c('product/regionCode')}, {c('product/region')})",
        "resource_id": c("lineItem/ResourceId"),
        "resource_name": c("lineItem/ResourceId"),
        "resource_type": c("product/productFamily"),
        "sku_id": c("product/sku"),
        "pricing_category": pricing,
        "pricing_unit": c("pricing/unit"),
        "pricing_quantity": amount,
        "consumed_quantity": f"CASE WHEN {kind} LIKE '%Usage' THEN {amount} END",
        "consumed_unit": f"CASE WHEN {kind} LIKE '%Usage' THEN {c('pricing/unit')} END",
        "billed_cost": billed,
        "effective_cost": effective,
        "list_cost": listed,
        "contracted_cost": "NULL",
        "commitment_discount_id": (
            f"coalesce(nullif({c('savingsPlan/SavingsPlanARN')}, ''), "
            f"nullif({c('reservation/ReservationARN')}, ''))"
        ),
        "tags": tags,
    }


def _joins(header: Header) -> list[tuple[str, list[dict[str, str]], str]]:
    code = _Cur(header).col("lineItem/ProductCode")
    return [
        (
            "aws_services",
            bills.lookup("aws_services"),
            f"LEFT JOIN aws_services ON aws_services.product_code = {code}",
        )
    ]


FORMAT = bills.register(
    bills.BillFormat(
        "cur",
        "an AWS Cost and Usage Report (legacy or 2.0)",
        _recognise,
        _expressions,
        _joins,
        identity=(
            ("identity/LineItemId", "identity_line_item_id"),
            ("identity/TimeInterval", "identity_time_interval"),
        ),
    )
)
