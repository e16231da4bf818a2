"""Build the bundled GPU price catalog, `src/aifinops/data/catalog.csv`, from the price facts
in the workplace's `shared/data/pricing` (run it again when those change):

- `fullstack-cloud-gpus/cloud-gpus.csv` (Full Stack Deep Learning, MIT, March 2025): GPU
  instance types of AWS, Azure, GCP, Oracle and ~15 GPU clouds, with GPUs, vCPUs, memory,
  on-demand, per-GPU and spot hourly prices;
- `opencost-pricing-fixtures/gcp_billing_catalog_skus.json` (a Cloud Billing Catalog
  response): A100 GPU, A2 core and A2 RAM prices per region, which price the a2-highgpu
  and a2-megagpu machine types exactly;
- `opencost-pricing-fixtures/oci_prices_usd.json` (an OCI price-list response): per-GPU
  hourly prices of OCI's GPU shapes.

Every row carries its source file and the date of its prices. `gpuhunt-2024` is not used:
its offers give neither an instance type nor a GPU count, so their price cannot be put per
GPU or per node.

    python scripts/build_catalog.py [--data ../shared/data/pricing]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aifinops.core.pricing import normalise_gpu_model  # noqa: E402

OUT = ROOT / "src" / "aifinops" / "data" / "catalog.csv"
COLUMNS = [
    "provider", "region", "instance_type", "gpu_model", "gpu_count", "vcpus", "memory_gib",
    "on_demand_hourly", "spot_hourly", "commit_1y_hourly", "commit_3y_hourly",
    "per_gpu_hourly", "gpu_component_hourly", "source", "as_of",
]  # fmt: skip
PROVIDERS = {
    "AWS": "aws", "Azure": "azure", "GCP": "gcp", "Oracle Cloud": "oci", "Lambda": "lambda",
    "RunPod": "runpod", "Datacrunch": "datacrunch", "Paperspace": "paperspace",
    "Jarvislabs": "jarvislabs", "OVHcloud": "ovhcloud", "FluidStack": "fluidstack",
    "Exoscale": "exoscale", "Cudo Compute": "cudo", "Oblivus Cloud": "oblivus",
    "NovoNimbus": "novonimbus", "Dataoorts": "dataoorts", "Latitude.sh": "latitude",
    "CR8DL": "cr8dl",
}  # fmt: skip
OCI_GPUS = {  # OCI price-list product -> the GPU of the shapes it prices
    "B88517": "P100 16GB",  # BM.GPU2.2 (X7)
    "B88518": "P100 16GB",  # VM.GPU2.1 (X7)
    "B89734": "V100 16GB",  # BM/VM.GPU3.x
    "B92740": "A100 40GB",  # BM.GPU4.8 (E3)
    "B95907": "A100 80GB",  # BM.GPU.A100-v2.8
    "B95909": "A10 24GB",  # VM/BM.GPU.A10.x
    "B98415": "H100 80GB",  # BM.GPU.H100.8
}


def money(text: str | Decimal | None) -> str:
    if text in (None, ""):
        return ""
    return format(Decimal(str(text)).normalize(), "f")


def fullstack(path: Path) -> list[dict[str, str]]:
    rows, seen = [], set()
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            provider = PROVIDERS.get(r["Cloud"].strip())
            name = r["Name"].strip()
            if provider is None or not r["On-demand"].strip():
                continue
            gpus = int(r["GPUs"])
            # GPU clouds sell configurations without a type name: those rows keep an empty
            # instance type and are found by GPU model and count
            key = (provider, name, r["GPU Type"], gpus, r["vCPUs"], r["RAM"])
            if key in seen:  # the list repeats some rows
                continue
            seen.add(key)
            rows.append(
                {
                    "provider": provider,
                    "region": "",
                    "instance_type": name,
                    "gpu_model": normalise_gpu_model(r["GPU Type"]) or "",
                    "gpu_count": str(gpus),
                    # a range ("24-30") is the provider's spread: keep the guaranteed low end
                    "vcpus": r["vCPUs"].strip().split("-")[0],
                    "memory_gib": r["RAM"].strip().split("-")[0],
                    "on_demand_hourly": money(r["On-demand"].strip()),
                    "spot_hourly": money(r["Spot"].strip() or None),
                    "commit_1y_hourly": "",
                    "commit_3y_hourly": "",
                    "per_gpu_hourly": money(r["Per-GPU"].strip() or None),
                    "gpu_component_hourly": "",  # Per-GPU there is the price / GPUs
                    "source": "fullstack-cloud-gpus/cloud-gpus.csv",
                    "as_of": "2025-03",
                }
            )
    return rows


def _unit_price(sku: dict) -> tuple[str, Decimal]:
    info = sku["pricingInfo"][0]
    rate = info["pricingExpression"]["tieredRates"][-1]["unitPrice"]
    value = Decimal(rate["units"]) + Decimal(rate["nanos"]) / Decimal(10**9)
    return rate["currencyCode"], value


A2 = {  # machine type -> (A100 40GB GPUs, vCPUs, GB of memory): Google's published shapes
    "a2-highgpu-1g": (1, 12, 85),
    "a2-highgpu-2g": (2, 24, 170),
    "a2-highgpu-4g": (4, 48, 340),
    "a2-highgpu-8g": (8, 96, 680),
    "a2-megagpu-16g": (16, 96, 1360),
}


def gcp(path: Path) -> list[dict[str, str]]:
    doc = json.loads(path.read_text())
    prices: dict[tuple[str, str], Decimal] = {}
    as_of: dict[str, str] = {}
    for sku in doc["skus"]:
        currency, value = _unit_price(sku)
        desc = sku["description"]
        if currency != "USD" or sku["category"]["usageType"] != "OnDemand":
            continue
        kind = (
            "gpu" if "A100" in desc and sku["category"]["resourceGroup"] == "GPU"
            else "core" if desc.startswith("A2 Instance Core")
            else "ram" if desc.startswith("A2 Instance Ram")
            else None
        )  # fmt: skip
        if kind is None:
            continue
        for region in sku["serviceRegions"]:
            prices[(region, kind)] = value
            as_of[region] = sku["pricingInfo"][0].get("effectiveTime", "")[:10]
    rows = []
    for region in sorted({r for r, _ in prices}):
        gpu, core, ram = (prices.get((region, k)) for k in ("gpu", "core", "ram"))
        if gpu is None:
            continue
        rows.append(
            {"provider": "gcp", "region": region, "instance_type": "", "gpu_model": "A100 40GB",
             "gpu_count": "1", "vcpus": "", "memory_gib": "", "on_demand_hourly": money(gpu),
             "spot_hourly": "", "commit_1y_hourly": "", "commit_3y_hourly": "",
             "per_gpu_hourly": money(gpu), "gpu_component_hourly": money(gpu),
             "source": f"{path.parent.name}/{path.name}", "as_of": as_of[region]}
        )  # fmt: skip
        if core is None or ram is None:
            continue
        for machine, (gpus, vcpus, mem) in A2.items():
            total = gpu * gpus + core * vcpus + ram * mem
            rows.append(
                {"provider": "gcp", "region": region, "instance_type": machine,
                 "gpu_model": "A100 40GB", "gpu_count": str(gpus), "vcpus": str(vcpus),
                 "memory_gib": str(mem), "on_demand_hourly": money(total), "spot_hourly": "",
                 "commit_1y_hourly": "", "commit_3y_hourly": "", "per_gpu_hourly": money(gpu),
                 "gpu_component_hourly": money(gpu),
                 "source": f"{path.parent.name}/{path.name}", "as_of": as_of[region]}
            )  # fmt: skip
    return rows


def oci(path: Path) -> list[dict[str, str]]:
    doc = json.loads(path.read_text())
    rows = []
    for item in doc["items"]:
        model = OCI_GPUS.get(item["partNumber"])
        if model is None or item.get("metricName") != "GPU Per Hour":
            continue
        usd = next(c for c in item["currencyCodeLocalizations"] if c["currencyCode"] == "USD")
        price = next(p["value"] for p in usd["prices"] if p["model"] == "PAY_AS_YOU_GO")
        rows.append(
            {"provider": "oci", "region": "", "instance_type": "", "gpu_model": model,
             "gpu_count": "1", "vcpus": "", "memory_gib": "", "on_demand_hourly": money(price),
             "spot_hourly": "", "commit_1y_hourly": "", "commit_3y_hourly": "",
             "per_gpu_hourly": money(price), "gpu_component_hourly": money(price),
             "source": f"{path.parent.name}/{path.name}#{item['partNumber']}",
             "as_of": "undated"}
        )  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "pricing"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    data = Path(args.data)
    rows = fullstack(data / "fullstack-cloud-gpus" / "cloud-gpus.csv")
    rows += gcp(data / "opencost-pricing-fixtures" / "gcp_billing_catalog_skus.json")
    rows += oci(data / "opencost-pricing-fixtures" / "oci_prices_usd.json")
    unknown = sorted({r["gpu_model"] for r in rows if not re.match(r"^[A-Z0-9]", r["gpu_model"])})
    if unknown:
        raise SystemExit(f"GPU names the normaliser does not know: {unknown}")
    rows.sort(key=lambda r: (r["provider"], r["instance_type"], r["region"], r["gpu_model"]))
    with Path(args.out).open("w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        out.writeheader()
        out.writerows(rows)
    print(f"{len(rows)} offers from {len({r['provider'] for r in rows})} providers -> {args.out}")


if __name__ == "__main__":
    main()
