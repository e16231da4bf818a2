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
from aifinops.sources.prices.price_apis import gcp_offers_from_skus  # noqa: E402

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


def gcp(path: Path) -> list[dict[str, str]]:
    """The A2 machine types per region, priced from the SKUs by the same code the live
    Billing Catalog API client uses, and each region's per-GPU A100 price."""
    source = f"{path.parent.name}/{path.name}"
    offers = gcp_offers_from_skus(json.loads(path.read_text())["skus"], source)
    rows = []
    for region in sorted({o.region for o in offers if o.region}):
        first = next(o for o in offers if o.region == region)
        gpu = first.gpu_component_hourly
        rows.append(
            {"provider": "gcp", "region": region, "instance_type": "", "gpu_model": "A100 40GB",
             "gpu_count": "1", "vcpus": "", "memory_gib": "", "on_demand_hourly": money(gpu),
             "spot_hourly": "", "commit_1y_hourly": "", "commit_3y_hourly": "",
             "per_gpu_hourly": money(gpu), "gpu_component_hourly": money(gpu),
             "source": source, "as_of": first.as_of}
        )  # fmt: skip
    for o in offers:
        rows.append(
            {"provider": "gcp", "region": o.region or "", "instance_type": o.instance_type,
             "gpu_model": o.gpu_model or "", "gpu_count": str(o.gpu_count),
             "vcpus": str(o.vcpus), "memory_gib": str(o.memory_gib),
             "on_demand_hourly": money(o.on_demand_hourly), "spot_hourly": money(o.spot_hourly),
             "commit_1y_hourly": money(o.commit_1y_hourly),
             "commit_3y_hourly": money(o.commit_3y_hourly),
             "per_gpu_hourly": money(o.per_gpu_hourly),
             "gpu_component_hourly": money(o.gpu_component_hourly), "source": source,
             "as_of": o.as_of}
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
