"""Azure cost exports (EA and MCA; actual or amortised; pay-as-you-go usage details) ->
FOCUS-shaped cost lines.

Headers come in several spellings: PascalCase (`CostInBillingCurrency`), camelCase
(`costInBillingCurrency`), lower case, localised with the English name in brackets
(`Maßeinheit (UnitOfMeasure)`), with a UTF-8 byte-order mark; names are matched
case-insensitively. Dates are `MM/DD/YYYY` or ISO. Tags are JSON, braces optional.

An actual-cost export says what was invoiced: BilledCost is its cost; a commitment purchase
is billed, and amortised over the usage it covers, so its EffectiveCost is 0. An amortised
export (`--dataset amortized`) says what the usage cost with commitments spread over it:
EffectiveCost is its cost, and usage a reservation or savings plan covered (and the unused
part of a commitment) was billed with the purchase, so its BilledCost is 0.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aifinops.errors import InputError, UsageError
from aifinops.sources.bills import engine as bills
from aifinops.sources.bills.engine import DAY_MS, Header, case, json_tags, literal, money, ms

DATES = ("%m/%d/%Y", "%Y-%m-%d", "%m/%d/%y", "%d.%m.%Y")
CHARGE_CATEGORY = {
    "Usage": "Usage",
    "UnusedReservation": "Usage",
    "UnusedSavingsPlan": "Usage",
    "Purchase": "Purchase",
    "Tax": "Tax",
    "Refund": "Credit",
    "RoundingAdjustment": "Adjustment",
}
PRICING_CATEGORY = {
    "OnDemand": "Standard",
    "Spot": "Dynamic",
    "Reservation": "Committed",
    "SavingsPlan": "Committed",
    "Savings Plan": "Committed",
}
COST = ("CostInBillingCurrency", "PreTaxCost", "Cost", "CostInPricingCurrency")


def _recognise(header: Header) -> bool:
    return (
        header.has(*COST)
        and header.has("Date", "UsageDateTime", "UsageDate")
        and (header.has("SubscriptionId", "SubscriptionGuid", "MeterCategory", "ConsumedService"))
    )


def _expressions(header: Header, options: dict[str, Any]) -> dict[str, str]:
    dataset = options.get("dataset", "actual")
    if dataset not in ("actual", "amortized"):
        raise UsageError(f"unknown Azure dataset {dataset!r}", where="--dataset",
                         hint="actual or amortized")  # fmt: skip
    c = header.col
    cost = money(c(*COST))
    zero = "CAST(0 AS DECIMAL(38, 12))"
    charge = c("ChargeType")
    model = c("PricingModel")
    committed = (
        f"({model} IN ('Reservation', 'SavingsPlan', 'Savings Plan') "
        f"AND coalesce({charge}, 'Usage') IN ('Usage', 'UnusedReservation', 'UnusedSavingsPlan'))"
    )
    if dataset == "actual":
        billed = cost
        effective = (
            f"CASE WHEN {charge} = 'Purchase' AND {model} IN ('Reservation', 'SavingsPlan', "
            f"'Savings Plan') THEN {zero} ELSE {cost} END"
        )
    else:
        billed = f"CASE WHEN {committed} THEN {zero} ELSE {cost} END"
        effective = cost
    day = ms(c("Date", "UsageDateTime", "UsageDate"), DATES)
    period_start = ms(c("BillingPeriodStartDate"), DATES)
    period_end = ms(c("BillingPeriodEndDate"), DATES)
    month = f"epoch_ms(date_trunc('month', make_timestamp({day} * 1000)))"
    next_month = f"epoch_ms(date_trunc('month', make_timestamp({day} * 1000)) + INTERVAL 1 MONTH)"
    quantity = money(c("Quantity", "UsageQuantity"))
    listed = (
        f"coalesce({money(c('PayGCostInBillingCurrency'))}, {money(c('PayGPrice'))} * {quantity})"
    )
    resource = c("ResourceId", "InstanceId", "InstanceName")
    resource_type = _resource_type(header)
    return {
        "provider": "'Microsoft'",
        "billing_account_id": c("BillingAccountId", "EnrollmentNumber"),
        "billing_account_name": c("BillingAccountName"),
        "sub_account_id": c("SubscriptionId", "SubscriptionGuid"),
        "sub_account_name": c("SubscriptionName"),
        "billing_currency": _currency(header, options),
        "billing_period_start_ms": f"coalesce({period_start}, {month})",
        # the export's period end is the last day, inclusive: the half-open end is a day on
        "billing_period_end_ms": f"coalesce({period_end} + {DAY_MS}, {next_month})",
        "charge_period_start_ms": day,
        "charge_period_end_ms": f"{day} + {DAY_MS}",
        "charge_category": case(f"coalesce({charge}, 'Usage')", CHARGE_CATEGORY, "'Adjustment'"),
        "charge_class": f"CASE WHEN {charge} = 'Refund' THEN 'Correction' END",
        "charge_description": c("ProductName", "MeterName"),
        "service_name": f"coalesce({c('MeterCategory')}, {c('ConsumedService')})",
        "service_category": (
            "coalesce(azure_by_type.service_category, azure_by_service.service_category, 'Other')"
        ),
        "region_id": c("ResourceLocation", "Location", "MeterRegion"),
        "resource_id": resource,
        "resource_name": c("ResourceName"),
        "resource_type": resource_type,
        "sku_id": c("MeterId", "ProductId", "PartNumber"),
        "pricing_category": case(model, PRICING_CATEGORY),
        "pricing_unit": c("UnitOfMeasure"),
        "pricing_quantity": quantity,
        "consumed_quantity": quantity,
        "consumed_unit": c("UnitOfMeasure"),
        "billed_cost": billed,
        "effective_cost": effective,
        "list_cost": listed,
        "commitment_discount_id": (
            f"coalesce(nullif({c('benefitId')}, ''), nullif({c('ReservationId')}, ''))"
        ),
        "tags": json_tags(c("Tags")),
    }


def _resource_type(header: Header) -> str:
    """The export's ResourceType, else the `provider/type` part of the resource id."""
    resource = header.col("ResourceId", "InstanceId", "InstanceName")
    from_id = f"regexp_extract(CAST({resource} AS VARCHAR), '/providers/([^/]+/[^/]+)', 1)"
    return f"coalesce({header.col('ResourceType')}, nullif({from_id}, ''))"


def _currency(header: Header, options: dict[str, Any]) -> str:
    found = header.col("BillingCurrencyCode", "BillingCurrency", "Currency")
    given = options.get("currency")
    if found == "NULL" and not given:
        raise InputError(
            "no currency column (BillingCurrencyCode, BillingCurrency or Currency)",
            hint="say which currency its costs are in: --currency USD",
        )
    return f"coalesce({found}, {literal(given.upper() if given else None)})"


def _joins(header: Header) -> list[tuple[str, list[dict[str, str]], str]]:
    rows = bills.lookup("azure_services")
    by_type = {}
    for r in rows:
        if r["ResourceType"]:
            by_type.setdefault(r["ResourceType"].lower(), r["ServiceCategory"])
    per_service: dict[str, Counter[str]] = {}
    for r in rows:
        if r["ConsumedService"]:
            counts = per_service.setdefault(r["ConsumedService"].lower(), Counter())
            counts[r["ServiceCategory"]] += 1
    by_service = {s: c.most_common(1)[0][0] for s, c in per_service.items()}
    type_key = f"lower({_resource_type(header)})"
    service = header.col("ConsumedService")
    return [
        (
            "azure_by_type",
            [{"resource_type": k, "service_category": v} for k, v in by_type.items()],
            f"LEFT JOIN azure_by_type ON azure_by_type.resource_type = {type_key}",
        ),
        (
            "azure_by_service",
            [{"consumed_service": k, "service_category": v} for k, v in by_service.items()],
            "LEFT JOIN azure_by_service ON azure_by_service.consumed_service = "
            + f"lower({service})",
        ),
    ]


FORMAT = bills.register(
    bills.BillFormat("azure", "an Azure cost export", _recognise, _expressions, _joins)
)
