"""The bundled price catalog: built by its script from the shared price facts, rows pinned to
their source files, every GPU name in the data normalised, lookups by type and GPU."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from aifinops.core.pricing import Catalog, normalise_gpu_model
from aifinops.sources.prices.catalog import bundled_offers
from tests.conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]


def _offer(instance_type: str, provider: str, region: str | None = None) -> object:
    found = [
        o
        for o in bundled_offers()
        if o.instance_type == instance_type and o.provider == provider and o.region == region
    ]
    assert len(found) == 1, (instance_type, provider, region, found)
    return found[0]


def test_the_script_rebuilds_the_committed_catalog(tmp_path: Path) -> None:
    pricing = shared_data("pricing/fullstack-cloud-gpus/cloud-gpus.csv").parents[1]
    out = tmp_path / "catalog.csv"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_catalog.py"), "--data", str(pricing),
         "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert out.read_text() == (ROOT / "src" / "aifinops" / "data" / "catalog.csv").read_text()


def test_rows_pinned_to_their_sources() -> None:
    source = shared_data("pricing/fullstack-cloud-gpus/cloud-gpus.csv")
    rows = {r["Name"]: r for r in csv.DictReader(source.read_text().splitlines()) if r["Name"]}
    for name, provider in (("p4d.24xlarge", "aws"), ("NC24ads A100 v4", "azure"),
                           ("BM.GPU.H100.8", "oci"), ("g5.48xlarge", "aws")):  # fmt: skip
        offer = _offer(name, provider)
        want = rows[name]
        assert offer.on_demand_hourly == Decimal(want["On-demand"])  # type: ignore[attr-defined]
        spot = Decimal(want["Spot"]) if want["Spot"] else None
        assert offer.spot_hourly == spot  # type: ignore[attr-defined]
        assert offer.gpu_count == int(want["GPUs"])  # type: ignore[attr-defined]
        assert offer.source == "fullstack-cloud-gpus/cloud-gpus.csv"  # type: ignore[attr-defined]
    # GCP: the a2 machine types priced from the Billing Catalog's SKUs, worked out here
    skus = json.loads(
        shared_data("pricing/opencost-pricing-fixtures/gcp_billing_catalog_skus.json").read_text()
    )["skus"]

    def price(prefix: str) -> Decimal:
        sku = next(s for s in skus if s["description"].startswith(prefix)
                   and "us-central1" in s["serviceRegions"])  # fmt: skip
        rate = sku["pricingInfo"][0]["pricingExpression"]["tieredRates"][-1]["unitPrice"]
        return Decimal(rate["units"]) + Decimal(rate["nanos"]) / 10**9

    gpu, core, ram = price("Nvidia Tesla A100"), price("A2 Instance Core"), price("A2 Instance Ram")
    a2 = _offer("a2-highgpu-1g", "gcp", "us-central1")
    assert a2.on_demand_hourly == gpu + 12 * core + 85 * ram == Decimal("3.673385")  # type: ignore[attr-defined]
    assert a2.gpu_component_hourly == gpu == Decimal("2.933908")  # type: ignore[attr-defined]
    assert a2.as_of == "2023-03-24"  # type: ignore[attr-defined]


def test_seed_price_table_where_the_catalog_covers_it() -> None:
    cat = Catalog(bundled_offers())
    # the seed platform's table (us-east-1 on-demand): p3.2xlarge 3.06, p4d.24xlarge 32.77
    # are exact; g4dn.xlarge 0.526 and g5.xlarge 1.006 are rounded to cents in the source
    seed = [("p3.2xlarge", "3.06", "0"), ("p4d.24xlarge", "32.77", "0"),
            ("g4dn.xlarge", "0.526", "0.005"), ("g5.xlarge", "1.006", "0.005")]  # fmt: skip
    for itype, price, tolerance in seed:
        offer = cat.find(itype, "aws")
        assert offer is not None
        assert abs(offer.on_demand_hourly - Decimal(price)) <= Decimal(tolerance), itype
    # g6e.12xlarge (4 x L40S) was unknown here before libcloud's regional prices (issue 12):
    # now priced, see tests/test_regional_prices.py; p5e.48xlarge has no price in libcloud
    g6e = cat.find("g6e.12xlarge", "aws")
    assert g6e is not None and (g6e.gpu_model, g6e.gpu_count) == ("L40S 48GB", 4)
    assert cat.find("p5e.48xlarge", "aws") is None  # unknown: the engine puts it in __unpriced__


def test_one_machine_type_with_different_gpus() -> None:
    cat = Catalog(bundled_offers())
    t4 = cat.find("n1-highmem-8", "gcp", None, "nvidia-tesla-t4")
    v100 = cat.find("n1-highmem-8", "gcp", None, "Tesla V100-SXM2-16GB")
    assert t4 is not None and t4.gpu_model == "T4 16GB" and t4.on_demand_hourly == Decimal("0.82")
    assert v100 is not None and v100.on_demand_hourly == Decimal("2.95")


def test_every_gpu_name_in_the_data_normalises() -> None:
    fullstack = shared_data("pricing/fullstack-cloud-gpus/cloud-gpus.csv").read_text()
    names = {r["GPU Type"] for r in csv.DictReader(fullstack.splitlines())}
    names |= {x["gpuModel"] for x in json.loads(
        shared_data("pricing/gpuhunt-2024/gpu_prices.json").read_text())}  # fmt: skip
    names |= {"NVIDIA H100 80GB HBM3", "Tesla T4", "NVIDIA A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3",
              "nvidia-tesla-a100", "V100M16", "V100M32", "P100", "T4", "A10"}  # fmt: skip
    known = ("GH200", "H100", "A100", "A10", "A10G", "A40", "A6000", "A5000", "A4000",
             "V100", "P100", "P4", "K80", "T4", "L4", "MI300X", "RTX6000", "RTX5000",
             "RTX4000", "3080TI")  # fmt: skip
    for name in names:
        got = normalise_gpu_model(name)
        assert got is not None and got.split(" ")[0] in known, (name, got)
    assert normalise_gpu_model("GH200 (96 GB)") == "GH200 96GB"  # not an H200
    assert normalise_gpu_model("V100M32") == "V100 32GB"


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp", "oci", "lambda", "runpod"])
def test_providers_present(provider: str) -> None:
    assert any(o.provider == provider for o in bundled_offers())
