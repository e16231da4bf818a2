# ruff: noqa: E501  (recorded API payloads are kept one object a line)
"""Cloud price APIs: the real GCP Billing Catalog response served locally, an Azure Retail
Prices response of the API's shape, AWS through botocore's Stubber; the cache's time-to-live
and the fallback to the bundled catalog when offline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from aifinops.config import load_settings
from aifinops.service import Service
from aifinops.sources import facts
from aifinops.sources.prices.catalog import bundled_offers
from aifinops.sources.prices.price_apis import aws_offers
from tests.conftest import Served, free_port, shared_data

D = Decimal
T0 = 1_795_428_000_000


def _service(tmp_path: Path, api: dict[str, Any], now: list[int]) -> Service:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"prices": {"api": api}}))
    clock = lambda: datetime.fromtimestamp(now[0] / 1000, UTC)  # noqa: E731
    return Service(
        load_settings(cfg, env={}, flags={"db": str(tmp_path / "p.duckdb")}), clock=clock
    )


def _node(svc: Service, **row: Any) -> None:
    row = {"node_id": "n1", "labels": {}, "source": "kubernetes", **row}
    svc.store.upsert_arrow("nodes", facts.rows_table([row], facts.NODES), "node_id")


def _total(p: Any, gpus: int) -> Decimal:
    return p.gpu_hourly * gpus + p.cpu_hourly + p.ram_hourly


def test_gcp_api_prices_a2_machines_and_the_cache_expires(tmp_path: Path, served: Served) -> None:
    body = shared_data("pricing/opencost-pricing-fixtures/gcp_billing_catalog_skus.json")
    # the real first page (it names a next page), then a last page without SKUs
    last = b'{"skus": [], "nextPageToken": ""}'
    served.routes["/v1/services/6F81-5844-456A/skus"] = [(200, body.read_bytes()), (200, last)] * 2
    now = [T0]
    api = {"providers": ["gcp"], "gcp_url": served.url("/v1/services/6F81-5844-456A/skus"),
           "ttl": "1h"}  # fmt: skip
    svc = _service(tmp_path, api, now)
    _node(svc, instance_type="a2-highgpu-1g", provider="gcp", region="us-central1", gpu_count=1,
          cpu_cores=12.0, memory_gib=85.0)  # fmt: skip
    (price,) = svc.node_prices()[0]
    # 2.933908 + 12 x 0.031611 + 85 x 0.004237, the SKUs' prices (see tests/test_catalog.py)
    assert _total(price, 1) == D("3.673385") and price.source.startswith(
        "catalog:gcp:a2-highgpu-1g"
    )
    assert served.hits["/v1/services/6F81-5844-456A/skus"] == 2  # two pages
    assert "pageToken=APKCS1HVa0Ypwgy" in served.requests[1][0]
    # within the hour the cache answers; after it the API is asked again
    now[0] = T0 + 30 * 60_000
    svc.node_prices()
    assert served.hits["/v1/services/6F81-5844-456A/skus"] == 2
    now[0] = T0 + 61 * 60_000
    svc.node_prices()
    assert served.hits["/v1/services/6F81-5844-456A/skus"] == 4
    svc.close()


AZURE = {
    "BillingCurrency": "USD",
    "CustomerEntityId": "Default",
    "CustomerEntityType": "Retail",
    "Items": [
        {"currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": 3.673, "unitPrice": 3.673,
         "armRegionName": "eastus", "location": "US East", "effectiveStartDate": "2024-03-01T00:00:00Z",
         "meterName": "NC24ads A100 v4", "productName": "Virtual Machines NCadsA100v4 Series",
         "skuName": "NC24ads A100 v4", "serviceName": "Virtual Machines", "unitOfMeasure": "1 Hour",
         "type": "Consumption", "isPrimaryMeterRegion": True, "armSkuName": "Standard_NC24ads_A100_v4"},
        {"currencyCode": "USD", "retailPrice": 0.7346, "unitPrice": 0.7346, "armRegionName": "eastus",
         "meterName": "NC24ads A100 v4 Spot", "productName": "Virtual Machines NCadsA100v4 Series",
         "skuName": "NC24ads A100 v4 Spot", "serviceName": "Virtual Machines",
         "unitOfMeasure": "1 Hour", "type": "Consumption", "armSkuName": "Standard_NC24ads_A100_v4"},
        {"currencyCode": "USD", "retailPrice": 4.5, "unitPrice": 4.5, "armRegionName": "eastus",
         "meterName": "NC24ads A100 v4", "productName": "Virtual Machines NCadsA100v4 Series Windows",
         "skuName": "NC24ads A100 v4", "serviceName": "Virtual Machines", "unitOfMeasure": "1 Hour",
         "type": "Consumption", "armSkuName": "Standard_NC24ads_A100_v4"},
        {"currencyCode": "USD", "retailPrice": 19272.0, "unitPrice": 19272.0, "armRegionName": "eastus",
         "meterName": "NC24ads A100 v4", "productName": "Virtual Machines NCadsA100v4 Series",
         "skuName": "NC24ads A100 v4", "serviceName": "Virtual Machines", "unitOfMeasure": "1 Hour",
         "type": "Reservation", "reservationTerm": "1 Year", "armSkuName": "Standard_NC24ads_A100_v4"},
        {"currencyCode": "USD", "retailPrice": 38544.0, "unitPrice": 38544.0, "armRegionName": "eastus",
         "meterName": "NC24ads A100 v4", "productName": "Virtual Machines NCadsA100v4 Series",
         "skuName": "NC24ads A100 v4", "serviceName": "Virtual Machines", "unitOfMeasure": "1 Hour",
         "type": "Reservation", "reservationTerm": "3 Years", "armSkuName": "Standard_NC24ads_A100_v4"},
    ],
    "NextPageLink": None,
    "Count": 5,
}  # fmt: skip


def test_azure_retail_prices(tmp_path: Path, served: Served) -> None:
    served.routes["/api/retail/prices"] = [(200, json.dumps(AZURE).encode())]
    now = [T0]
    api = {"providers": ["azure"], "azure_url": served.url("/api/retail/prices")}
    svc = _service(tmp_path, api, now)
    _node(svc, instance_type="Standard_NC24ads_A100_v4", provider="azure", region="eastus",
          gpu_count=1)  # fmt: skip
    (result,) = svc.refresh_prices()
    assert result.status == "loaded" and result.rows == 1
    (offer,) = [o for o in svc.catalog.offers if o.source == "azure-retail-prices-api"]
    assert (offer.instance_type, offer.region, offer.gpu_model) == (
        "NC24ads A100 v4",
        "eastus",
        "A100 80GB",
    )
    assert offer.on_demand_hourly == D("3.673") and offer.spot_hourly == D("0.7346")
    assert offer.commit_1y_hourly == D("19272") / 8760  # = 2.2 an hour
    assert offer.commit_3y_hourly == D("38544") / 26280
    query = served.requests[0][0]
    assert "armSkuName+eq+%27Standard_NC24ads_A100_v4%27" in query
    svc.close()


def test_offline_falls_back_to_the_bundled_catalog_and_says_so(tmp_path: Path) -> None:
    now = [T0]
    api = {"providers": ["azure"], "azure_url": f"http://127.0.0.1:{free_port()}/prices"}
    svc = _service(tmp_path, api, now)
    _node(svc, instance_type="Standard_NC24ads_A100_v4", provider="azure", gpu_count=1)
    (price,) = svc.node_prices()[0]
    assert _total(price, 1) == D("3.67")  # the bundled catalog's price for "NC24ads A100 v4"
    assert any("price API for azure unreachable" in n and "bundled catalog" in n
               for n in svc.price_notes)  # fmt: skip
    svc.close()


def _aws_product(itype: str, on_demand: str, one_year: str, three_year: str) -> str:
    def term(code: str, price: str, attrs: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "offerTermCode": code,
            "sku": "SKU1",
            "effectiveDate": "2025-11-01T00:00:00Z",
            "priceDimensions": {f"SKU1.{code}.6YS6EN2CT7": {
                "unit": "Hrs", "endRange": "Inf", "description": f"{price} per hour",
                "appliesTo": [], "rateCode": f"SKU1.{code}.6YS6EN2CT7", "beginRange": "0",
                "pricePerUnit": {"USD": price}}},
            "termAttributes": attrs or {},
        }  # fmt: skip

    return json.dumps(
        {
            "product": {"productFamily": "Compute Instance", "sku": "SKU1", "attributes": {
                "instanceType": itype, "regionCode": "us-east-1", "vcpu": "4",
                "memory": "16 GiB", "gpu": "1", "operatingSystem": "Linux", "tenancy": "Shared",
                "preInstalledSw": "NA", "capacitystatus": "Used"}},
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {"SKU1.JRTCKXETXF": term("JRTCKXETXF", on_demand)},
                "Reserved": {
                    "SKU1.4NA7Y494T4": term("4NA7Y494T4", one_year, {
                        "LeaseContractLength": "1yr", "OfferingClass": "standard",
                        "PurchaseOption": "No Upfront"}),
                    "SKU1.BPH4J8HBKS": term("BPH4J8HBKS", three_year, {
                        "LeaseContractLength": "3yr", "OfferingClass": "standard",
                        "PurchaseOption": "No Upfront"}),
                },
            },
            "version": "20251101000000",
            "publicationDate": "2025-11-01T00:00:00Z",
        }
    )  # fmt: skip


def test_aws_price_list_through_stubber() -> None:
    import boto3
    from botocore.stub import ANY, Stubber

    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")  # fmt: skip
    stub = Stubber(client)
    # the seed platform's prices, exact: g4dn.xlarge 0.526, g5.xlarge 1.006 (us-east-1)
    for itype, price in (("g4dn.xlarge", "0.5260000000"), ("g5.xlarge", "1.0060000000")):
        stub.add_response(
            "get_products",
            {"PriceList": [_aws_product(itype, price, "0.3300000000", "0.2270000000")],
             "FormatVersion": "aws_v1"},
            {"ServiceCode": "AmazonEC2", "Filters": ANY, "MaxResults": 100},
        )  # fmt: skip
    with stub:
        offers = aws_offers(client, ["g4dn.xlarge", "g5.xlarge"], "us-east-1", bundled_offers())
    stub.assert_no_pending_responses()
    got = {o.instance_type: o for o in offers}
    assert got["g4dn.xlarge"].on_demand_hourly == D("0.526")
    assert got["g5.xlarge"].on_demand_hourly == D("1.006")
    assert got["g4dn.xlarge"].gpu_model == "T4 16GB"  # from the catalog: the API names none
    assert got["g5.xlarge"].commit_1y_hourly == D("0.33")
    assert got["g5.xlarge"].commit_3y_hourly == D("0.227")
    assert got["g5.xlarge"].region == "us-east-1" and got["g5.xlarge"].as_of == "2025-11-01"
