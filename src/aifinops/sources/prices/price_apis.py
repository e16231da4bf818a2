"""Cloud price APIs, normalised into catalog offers:

- Azure Retail Prices API (`https://prices.azure.com/api/retail/prices`, no key): Linux
  consumption prices per VM size and region; `Spot` meters are the spot price; reservation
  terms give 1- and 3-year committed prices (turned into hourly).
- Google Cloud Billing Catalog API (`cloudbilling.googleapis.com/v1/services/{id}/skus`):
  GPU, core and RAM SKUs per region; A2 machine types are priced from them.
- AWS Price List Query API through boto3's `pricing` client (`get_products`): on-demand and
  reserved (1yr/3yr, no upfront) Linux shared-tenancy prices per instance type and region.

Each returns offers of the catalog's shape; the service caches them with a time-to-live and
falls back to the bundled catalog, saying so, when an API cannot be reached.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from aifinops.core.pricing import CatalogOffer
from aifinops.sources.http import fetch_text

AZURE_URL = "https://prices.azure.com/api/retail/prices"
GCP_URL = "https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus"
HOURS = {"1 Year": Decimal(8760), "3 Years": Decimal(8760 * 3)}

# GPU machine shapes the APIs price by component or name only: type -> (GPU, GPUs, vCPUs, GiB)
GCP_A2 = {
    "a2-highgpu-1g": ("A100 40GB", 1, 12, 85),
    "a2-highgpu-2g": ("A100 40GB", 2, 24, 170),
    "a2-highgpu-4g": ("A100 40GB", 4, 48, 340),
    "a2-highgpu-8g": ("A100 40GB", 8, 96, 680),
    "a2-megagpu-16g": ("A100 40GB", 16, 96, 1360),
}


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


# -- Azure -------------------------------------------------------------------------------------
def azure_offers(
    sizes: Iterable[str],
    region: str | None = None,
    *,
    base_url: str = AZURE_URL,
    fetch: Callable[[str], str] = fetch_text,
    catalog: Iterable[CatalogOffer] = (),
) -> list[CatalogOffer]:
    """Offers for Azure VM sizes (`Standard_NC24ads_A100_v4`), GPU facts from the catalog."""
    known = {o.instance_type.replace(" ", "_").lower(): o for o in catalog if o.provider == "azure"}
    offers = []
    for size in sizes:
        arm = size if size.lower().startswith("standard_") else "Standard_" + size.replace(" ", "_")
        flt = f"serviceName eq 'Virtual Machines' and armSkuName eq '{arm}'"
        if region:
            flt += f" and armRegionName eq '{region}'"
        url = f"{base_url}?{urllib.parse.urlencode({'$filter': flt})}"
        items: list[dict[str, Any]] = []
        while url:
            page = json.loads(fetch(url))
            items += page.get("Items") or []
            url = page.get("NextPageLink") or ""
        by_region: dict[str, dict[str, Decimal]] = {}
        for it in items:
            if "Windows" in it.get("productName", ""):
                continue
            if it.get("type") == "Consumption" and it.get("unitOfMeasure") != "1 Hour":
                continue
            p = by_region.setdefault(it["armRegionName"], {})
            sku = it.get("skuName", "")
            if it.get("type") == "Consumption" and "Low Priority" not in sku:
                p["spot" if "Spot" in sku else "on_demand"] = _dec(it["retailPrice"])
            elif it.get("type") == "Reservation" and it.get("reservationTerm") in HOURS:
                p[it["reservationTerm"]] = _dec(it["retailPrice"]) / HOURS[it["reservationTerm"]]
        facts = known.get(arm.lower().removeprefix("standard_"))
        for reg, p in sorted(by_region.items()):
            if "on_demand" not in p:
                continue
            offers.append(
                CatalogOffer(
                    provider="azure",
                    instance_type=arm.removeprefix("Standard_").replace("_", " "),
                    gpu_model=facts.gpu_model if facts else None,
                    gpu_count=facts.gpu_count if facts else 0,
                    vcpus=facts.vcpus if facts else Decimal(0),
                    memory_gib=facts.memory_gib if facts else Decimal(0),
                    on_demand_hourly=p["on_demand"],
                    spot_hourly=p.get("spot"),
                    region=reg,
                    commit_1y_hourly=p.get("1 Year"),
                    commit_3y_hourly=p.get("3 Years"),
                    source="azure-retail-prices-api",
                    as_of="",
                )
            )
    return offers


# -- Google Cloud ------------------------------------------------------------------------------
def gcp_offers_from_skus(skus: list[dict[str, Any]], source: str) -> list[CatalogOffer]:
    """A100 per-GPU prices and the A2 machine types, per region, from Billing Catalog SKUs."""
    prices: dict[tuple[str, str, str], Decimal] = {}
    as_of: dict[str, str] = {}
    for sku in skus:
        info = (sku.get("pricingInfo") or [{}])[0]
        rates = info.get("pricingExpression", {}).get("tieredRates") or []
        if not rates:
            continue
        unit = rates[-1]["unitPrice"]
        if unit.get("currencyCode") != "USD":
            continue
        value = Decimal(str(unit.get("units") or 0)) + Decimal(unit.get("nanos") or 0) / 10**9
        usage = sku.get("category", {}).get("usageType")
        term = {"OnDemand": "on_demand", "Preemptible": "spot", "Commit1Yr": "1y",
                "Commit3Yr": "3y"}.get(usage or "")  # fmt: skip
        desc = sku.get("description", "")
        part = (
            "gpu" if "A100" in desc and sku.get("category", {}).get("resourceGroup") == "GPU"
            else "core" if desc.startswith(("A2 Instance Core", "Preemptible A2 Instance Core"))
            else "ram" if desc.startswith(("A2 Instance Ram", "Preemptible A2 Instance Ram"))
            else None
        )  # fmt: skip
        if term is None or part is None:
            continue
        for region in sku.get("serviceRegions") or []:
            prices[(region, part, term)] = value
            as_of[region] = (info.get("effectiveTime") or "")[:10]
    offers = []
    for region in sorted({r for r, _, _ in prices}):

        def total(
            term: str, gpus: int, vcpus: int, mem: int, region: str = region
        ) -> Decimal | None:
            parts = [prices.get((region, k, term)) for k in ("gpu", "core", "ram")]
            if any(p is None for p in parts):
                return None
            gpu, core, ram = parts
            assert gpu is not None and core is not None and ram is not None
            return gpu * gpus + core * vcpus + ram * mem

        for machine, (model, gpus, vcpus, mem) in GCP_A2.items():
            on_demand = total("on_demand", gpus, vcpus, mem)
            if on_demand is None:
                continue
            offers.append(
                CatalogOffer(
                    provider="gcp", instance_type=machine, gpu_model=model, gpu_count=gpus,
                    vcpus=Decimal(vcpus), memory_gib=Decimal(mem), on_demand_hourly=on_demand,
                    spot_hourly=total("spot", gpus, vcpus, mem), region=region,
                    gpu_component_hourly=prices.get((region, "gpu", "on_demand")),
                    commit_1y_hourly=total("1y", gpus, vcpus, mem),
                    commit_3y_hourly=total("3y", gpus, vcpus, mem),
                    per_gpu_hourly=prices.get((region, "gpu", "on_demand")),
                    source=source, as_of=as_of[region],
                )
            )  # fmt: skip
    return offers


def gcp_offers(
    api_key: str | None,
    *,
    base_url: str = GCP_URL,
    fetch: Callable[[str], str] = fetch_text,
) -> list[CatalogOffer]:
    skus: list[dict[str, Any]] = []
    token = ""
    while True:
        params = {"pageSize": "5000", **({"key": api_key} if api_key else {})}
        if token:
            params["pageToken"] = token
        page = json.loads(fetch(f"{base_url}?{urllib.parse.urlencode(params)}"))
        skus += page.get("skus") or []
        following = page.get("nextPageToken") or ""
        if not following or following == token:  # the end (or a server repeating itself)
            break
        token = following
    return gcp_offers_from_skus(skus, "gcp-billing-catalog-api")


# -- AWS ---------------------------------------------------------------------------------------
AWS_LOCATIONS = {
    "us-east-1": "US East (N. Virginia)", "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)", "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)", "eu-central-1": "EU (Frankfurt)",
    "ap-northeast-1": "Asia Pacific (Tokyo)", "ap-southeast-1": "Asia Pacific (Singapore)",
}  # fmt: skip


def aws_offers(
    client: Any,
    instance_types: Iterable[str],
    region: str = "us-east-1",
    catalog: Iterable[CatalogOffer] = (),
) -> list[CatalogOffer]:
    """Linux, shared tenancy, no pre-installed software: on-demand and 1yr/3yr no-upfront
    reserved prices from `get_products` (boto3 `pricing` client, or a Stubber in tests).
    The Price List names no GPU model: that comes from the catalog's row for the type."""
    known = {o.instance_type.lower(): o for o in catalog if o.provider == "aws"}
    offers = []
    for itype in instance_types:
        filters = [
            {"Type": "TERM_MATCH", "Field": "instanceType", "Value": itype},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        ]
        token = None
        price_list: list[str] = []
        while True:
            kwargs: dict[str, Any] = {
                "ServiceCode": "AmazonEC2",
                "Filters": filters,
                "MaxResults": 100,
            }
            if token:
                kwargs["NextToken"] = token
            page = client.get_products(**kwargs)
            price_list += page.get("PriceList") or []
            token = page.get("NextToken")
            if not token:
                break
        for raw in price_list:
            item = json.loads(raw) if isinstance(raw, str) else raw
            attrs = item["product"]["attributes"]
            on_demand = _first_price(item["terms"].get("OnDemand") or {})
            if on_demand is None:
                continue
            commit = {}
            for term in (item["terms"].get("Reserved") or {}).values():
                ta = term.get("termAttributes", {})
                no_upfront = ta.get("PurchaseOption") == "No Upfront"
                if no_upfront and ta.get("OfferingClass") == "standard":
                    price = _first_price({"t": term})
                    if price is not None:
                        commit[ta.get("LeaseContractLength")] = price
            gpus = int(attrs.get("gpu") or 0)
            facts = known.get(attrs["instanceType"].lower())
            offers.append(
                CatalogOffer(
                    provider="aws",
                    instance_type=attrs["instanceType"],
                    gpu_model=facts.gpu_model if facts else None,
                    gpu_count=gpus or (facts.gpu_count if facts else 0),
                    vcpus=_dec(attrs.get("vcpu") or 0),
                    memory_gib=_dec((attrs.get("memory") or "0").split()[0].replace(",", "")),
                    on_demand_hourly=on_demand,
                    spot_hourly=None,
                    region=attrs.get("regionCode") or region,
                    commit_1y_hourly=commit.get("1yr"),
                    commit_3y_hourly=commit.get("3yr"),
                    source="aws-price-list-api",
                    as_of=(item.get("publicationDate") or "")[:10],
                )
            )
    return offers


def _first_price(terms: dict[str, Any]) -> Decimal | None:
    for term in terms.values():
        for dim in (term.get("priceDimensions") or {}).values():
            if dim.get("unit") in ("Hrs", "Hours") and "USD" in dim.get("pricePerUnit", {}):
                value = _dec(dim["pricePerUnit"]["USD"])
                if value > 0:
                    return value
    return None


# -- the APIs by provider name -------------------------------------------------------------
def _aws_pricing_client() -> Any:  # pragma: no cover - needs AWS credentials
    import boto3

    return boto3.client("pricing", region_name="us-east-1")


def _ask_azure(api: Any, types: list[str], bundled: list[CatalogOffer]) -> list[CatalogOffer]:
    return azure_offers(types, api.azure_region, base_url=api.azure_url, catalog=bundled)


def _ask_gcp(api: Any, types: list[str], bundled: list[CatalogOffer]) -> list[CatalogOffer]:
    return gcp_offers(api.gcp_api_key, base_url=api.gcp_url)


def _ask_aws(api: Any, types: list[str], bundled: list[CatalogOffer]) -> list[CatalogOffer]:
    return aws_offers(_aws_pricing_client(), types, api.aws_region, bundled)  # pragma: no cover


# name -> ask(api settings, that provider's instance types in the store, bundled catalog)
PROVIDERS: dict[str, Callable[[Any, list[str], list[CatalogOffer]], list[CatalogOffer]]] = {
    "aws": _ask_aws,
    "azure": _ask_azure,
    "gcp": _ask_gcp,
}
