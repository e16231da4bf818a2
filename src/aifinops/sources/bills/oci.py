"""Oracle Cloud (OCI) cost reports (`reports/cost-csv`) -> FOCUS-shaped cost lines.

Costs are `cost/myCost` (what the tenancy pays: BilledCost and EffectiveCost), list cost is
`cost/unitPrice` x `usage/billedQuantity`; tags are the `tags/NAMESPACE.KEY` columns; the
billing period is the calendar month of the usage interval. Correction lines
(`lineItem/isCorrection`) are kept, classed as corrections.
"""

from __future__ import annotations

from typing import Any

from aifinops.sources.bills import engine as bills
from aifinops.sources.bills.engine import Header, column_tags, money, ms


def _recognise(header: Header) -> bool:
    return header.has("cost/myCost") and header.has("lineItem/intervalUsageStart")


def _expressions(header: Header, options: dict[str, Any]) -> dict[str, str]:
    c = header.col
    start = ms(c("lineItem/intervalUsageStart"))
    quantity = money(c("usage/billedQuantity"))
    return {
        "provider": "'Oracle'",
        "billing_account_id": c("lineItem/tenantId"),
        "sub_account_id": c("product/compartmentId"),
        "sub_account_name": c("product/compartmentName"),
        "billing_currency": c("cost/currencyCode"),
        "billing_period_start_ms": f"epoch_ms(date_trunc('month', make_timestamp({start} * 1000)))",
        "billing_period_end_ms": (
            f"epoch_ms(date_trunc('month', make_timestamp({start} * 1000)) + INTERVAL 1 MONTH)"
        ),
        "charge_period_start_ms": start,
        "charge_period_end_ms": ms(c("lineItem/intervalUsageEnd")),
        "charge_category": "'Usage'",
        "charge_class": (
            f"CASE WHEN lower(CAST({c('lineItem/isCorrection')} AS VARCHAR)) = 'true' "
            "THEN 'Correction' END"
        ),
        "charge_description": c("product/Description"),
        "service_name": c("product/service"),
        "service_category": "coalesce(oci_services.service_category, 'Other')",
        "region_id": c("product/region"),
        "resource_id": c("product/resourceId"),
        "sku_id": c("cost/productSku"),
        "pricing_category": "'Standard'",
        "pricing_unit": c("cost/skuUnitDescription"),
        "pricing_quantity": quantity,
        "consumed_quantity": quantity,
        "consumed_unit": c("cost/skuUnitDescription"),
        "billed_cost": money(c("cost/myCost")),
        "effective_cost": money(c("cost/myCost")),
        "list_cost": f"{money(c('cost/unitPrice'))} * {quantity}",
        "tags": column_tags(header, ("tags/",)),
    }


def _joins(header: Header) -> list[tuple[str, list[dict[str, str]], str]]:
    service = header.col("product/service")
    on = f"upper({service})"
    return [
        (
            "oci_services",
            bills.lookup("oci_services"),
            f"LEFT JOIN oci_services ON oci_services.service = {on}",
        )
    ]


FORMAT = bills.register(
    bills.BillFormat("oci", "an OCI cost report", _recognise, _expressions, _joins)
)
