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

and, per region, Apache Libcloud's `libcloud/data/pricing.json` (Apache-2.0; 3.9.1, prices of
2025-03-02): on-demand Linux prices of AWS (`ec2_linux`) and Azure (`azure_linux`) GPU
instance types per region. Its GPU facts come from the rows above or from the hand-written
`data/gpu_instance_types.csv`. The GPU part of it is kept in `data/libcloud/pricing-gpu.json`,
so the catalog rebuilds offline; `--libcloud` (the wheel, or its pricing.json) renews it.

Libcloud's prices are weighed before they are used (steps in `weigh`): a regional price
that disagrees by more than 5 % with another source for the same type and region, or with
the regions AWS prices alike, is left out and printed; that region then falls back to the
region-less offer, which a price query marks "any region".

Every row carries its source file and the date of its prices. `gpuhunt-2024` is not used:
its offers give neither an instance type nor a GPU count, so their price cannot be put per
GPU or per node.

    python scripts/build_catalog.py [--data ../shared/data/pricing] [--libcloud WHEEL|JSON]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aifinops.core.pricing import normalise_gpu_model, type_key  # noqa: E402
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


# -- regional prices from Apache Libcloud ---------------------------------------------------
DATA = ROOT / "src" / "aifinops" / "data"
LIBCLOUD = DATA / "libcloud" / "pricing-gpu.json"  # the GPU part of libcloud's pricing.json
SPECS = DATA / "gpu_instance_types.csv"
LIBCLOUD_TABLES = {"aws": "ec2_linux", "azure": "azure_linux"}
# where a region-less list price is compared with a regional one: the region those lists
# quote (Full Stack's AWS and Azure prices are us-east-1's and eastus')
REFERENCE = {"aws": "us-east-1", "azure": "eastus", "gcp": "us-central1"}
# regions whose on-demand Linux prices AWS sets alike; a libcloud price above the others is
# most likely the dedicated-tenancy price (10 % more) that its scraper picked up
SAME_PRICE = {"aws": ("us-east-1", "us-east-2", "us-west-2")}
THRESHOLD = Decimal("0.05")
# prices others have stated, for the check only (never rows of the catalog)
KNOWN = [
    ("aws", "g4dn.xlarge", "us-east-1", "0.526", "seeds/000_396be01ded051f5c.txt"),
    ("aws", "g5.xlarge", "us-east-1", "1.006", "seeds/000_396be01ded051f5c.txt"),
    ("aws", "p3.2xlarge", "us-east-1", "3.06", "seeds/000_396be01ded051f5c.txt"),
    ("azure", "Standard_NC4as_T4_v3", "eastus", "0.526", "seeds/000_396be01ded051f5c.txt"),
    ("aws", "p4d.24xlarge", "us-east-1", "32.77", "seeds/003_499d30214f5d2207.txt"),
    ("aws", "p3.2xlarge", "us-east-1", "3.06", "seeds/003_499d30214f5d2207.txt"),
    ("gcp", "a2-highgpu-1g", "us-central1", "3.67", "seeds/003_499d30214f5d2207.txt"),
    ("aws", "g4dn.xlarge", "us-east-1", "0.526", "tests/test_price_apis.py (recorded AWS)"),
    ("aws", "g5.xlarge", "us-east-1", "1.006", "tests/test_price_apis.py (recorded AWS)"),
    ("azure", "Standard_NC24ads_A100_v4", "eastus", "3.673",
     "tests/test_price_apis.py (Azure Retail Prices shape)"),
]  # fmt: skip

Key = tuple[str, str]  # provider, type_key


def read_libcloud(path: Path) -> tuple[dict, dict | None]:
    """libcloud's pricing document (from the wheel, its pricing.json or our GPU part of it)
    and, from the wheel, its EC2 instance-type facts (to check the hand-written specs)."""
    if path.suffix != ".whl":
        doc = json.loads(path.read_text())
        return doc, None
    import ast

    version = re.match(r"apache_libcloud-([^-]+)-", path.name)
    with zipfile.ZipFile(path) as whl:
        doc = json.loads(whl.read("libcloud/data/pricing.json"))
        text = whl.read("libcloud/compute/constants/ec2_instance_types.py").decode()
    doc["version"] = version.group(1) if version else "unknown"
    tree = ast.parse(text)
    ec2 = next(
        ast.literal_eval(n.value) for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "INSTANCE_TYPES"
    )  # fmt: skip
    return doc, ec2


def instance_facts(rows: list[dict[str, str]]) -> dict[Key, dict[str, str]]:
    """GPU facts per AWS and Azure instance type: the catalog's rows, then the spec table."""
    facts: dict[Key, dict[str, str]] = {}
    for r in rows:
        if r["provider"] in LIBCLOUD_TABLES and r["instance_type"]:
            facts.setdefault((r["provider"], type_key(r["instance_type"])), r)
    with SPECS.open(newline="") as fh:
        for r in csv.DictReader(fh):
            key = (r["provider"], type_key(r["instance_type"]))
            if key in facts:
                raise SystemExit(f"{SPECS.name}: {r['instance_type']} is in the catalog already")
            facts[key] = {**r, "gpu_model": normalise_gpu_model(r["gpu_model"]) or ""}
    return facts


def check_specs(ec2: dict) -> list[str]:
    """The spec table against libcloud's EC2 facts (GPUs, vCPUs, memory): differences."""
    out = []
    with SPECS.open(newline="") as fh:
        for r in csv.DictReader(fh):
            extra = ec2.get(r["instance_type"], {}).get("extra") if r["provider"] == "aws" else None
            if extra is None:
                continue
            theirs = (extra.get("gpu"), extra.get("vcpu"), extra.get("memory", "").split(" ")[0])
            ours = (r["gpu_count"], r["vcpus"], r["memory_gib"])
            if theirs != ours:
                out.append(f"{r['instance_type']}: spec table {ours}, libcloud {theirs}")
    return out


def gpu_part(doc: dict, facts: dict[Key, dict[str, str]]) -> dict:
    """The part of libcloud's pricing document the catalog uses: the prices of the GPU
    instance types we know the GPUs of, offered (libcloud's 0.0 means no price)."""
    compute: dict[str, dict[str, dict[str, float]]] = {}
    for provider, table in LIBCLOUD_TABLES.items():
        for name, regions in sorted(doc["compute"][table].items()):
            if (provider, libcloud_key(provider, name)) not in facts:
                continue
            offered = {region: price for region, price in sorted(regions.items()) if price}
            if offered:
                compute.setdefault(table, {})[name] = offered
    return {"version": doc.get("version", "unknown"), "updated": doc["updated"],
            "origin": "libcloud/data/pricing.json of apache-libcloud (Apache-2.0), GPU types",
            "compute": compute}  # fmt: skip


def libcloud_key(provider: str, name: str) -> str:
    # libcloud spells Azure sizes `standardnc24sv3`; type_key spells them `nc24sv3`
    return type_key(name.removeprefix("standard") if provider == "azure" else name)


def claims(rows: list[dict[str, str]], seeds: Path) -> dict[tuple[str, str, str], list]:
    """Every other source's price per (provider, type, region); a region-less list price
    counts for its provider's reference region."""
    out: dict[tuple[str, str, str], list[tuple[Decimal, str]]] = {}
    for r in rows:
        if r["instance_type"] and r["provider"] in REFERENCE:
            region = r["region"] or REFERENCE[r["provider"]]
            key = (r["provider"], type_key(r["instance_type"]), region)
            where = r["source"] + ("" if r["region"] else " (region-less)")
            out.setdefault(key, []).append((Decimal(r["on_demand_hourly"]), where))
    for provider, itype, region, price, where in KNOWN:
        if where.startswith("seeds/") and not (seeds / Path(where).name).exists():
            continue  # the seeds are the workplace's, not ours: check them where they are
        out.setdefault((provider, type_key(itype), region), []).append((Decimal(price), where))
    return out


def weigh(
    part: dict, facts: dict[Key, dict[str, str]], others: dict[tuple[str, str, str], list]
) -> tuple[dict[tuple[str, str, str], Decimal], list[str]]:
    """Libcloud's regional prices, less those that disagree, and the report of what was
    compared and left out:
    1. the prices of the regions AWS prices alike: one more than 5 % above the lowest of
       them is left out (at 1.10 x, the dedicated-tenancy price);
    2. each other source for the same type and region (a region-less list for its
       reference region): a libcloud price more than 5 % from it is left out;
    3. what is left is the catalog's regional rows; where a price is left out, the region
       falls back to the region-less row (another source's, or libcloud's own, below)."""
    prices: dict[tuple[str, str, str], Decimal] = {}
    for provider, table in LIBCLOUD_TABLES.items():
        for name, regions in part["compute"].get(table, {}).items():
            for region, price in regions.items():
                prices[(provider, libcloud_key(provider, name), region)] = Decimal(str(price))
    report, dropped, compared = [], set(), 0
    for (provider, key, region), price in sorted(prices.items()):
        name = facts[(provider, key)]["instance_type"]
        alike = [r for r in SAME_PRICE.get(provider, ()) if (provider, key, r) in prices]
        if region in alike:
            low = min(prices[(provider, key, r)] for r in alike)
            if price > low * (1 + THRESHOLD):
                dropped.add((provider, key, region))
                report.append(
                    f"{provider} {name} {region}: libcloud {price} = "
                    f"{price / low:.3f} x its {'/'.join(alike)} low {low}; left out"
                )
        for other, where in others.get((provider, key, region), []):
            off = abs(price - other) / other
            compared += 1
            if off > THRESHOLD:
                dropped.add((provider, key, region))
                report.append(f"{provider} {name} {region}: libcloud {price} vs {other} "
                              f"{where} ({off:.1%} apart); left out")  # fmt: skip
    kept = {k: v for k, v in prices.items() if k not in dropped}
    disagreed = sum(" apart)" in line for line in report)
    report.append(
        f"{compared} comparisons with other sources, {disagreed} over "
        f"{THRESHOLD:.0%}; {len(dropped)} of {len(prices)} libcloud prices left out"
    )
    return kept, report


def libcloud_rows(
    part: dict,
    facts: dict[Key, dict[str, str]],
    kept: dict[tuple[str, str, str], Decimal],
    regionless: set[Key],
) -> list[dict[str, str]]:
    source = f"apache-libcloud-{part['version']}/pricing.json"
    as_of = datetime.fromtimestamp(part["updated"], UTC).date().isoformat()
    rows = []

    def row(provider: str, key: str, region: str, price: Decimal, src: str) -> dict[str, str]:
        f = facts[(provider, key)]
        gpus = int(f["gpu_count"])
        per_gpu = (price / gpus).quantize(Decimal("0.000001"))
        return {"provider": provider, "region": region, "instance_type": f["instance_type"],
                "gpu_model": f["gpu_model"], "gpu_count": str(gpus), "vcpus": f["vcpus"],
                "memory_gib": f["memory_gib"], "on_demand_hourly": money(price),
                "spot_hourly": "", "commit_1y_hourly": "", "commit_3y_hourly": "",
                "per_gpu_hourly": money(per_gpu), "gpu_component_hourly": "", "source": src,
                "as_of": as_of}  # fmt: skip

    for (provider, key, region), price in sorted(kept.items()):
        rows.append(row(provider, key, region, price, source))
    # a type only libcloud prices gets a region-less row too, so that a node in a region
    # libcloud lacks is priced (marked "any region"): the reference region's price, else
    # that of a region AWS prices alike
    for provider, key in sorted({(p, k) for p, k, _ in kept} - regionless):
        order = (REFERENCE[provider], *SAME_PRICE.get(provider, ()))
        region = next((r for r in order if (provider, key, r) in kept), None)
        if region is not None:
            rows.append(row(provider, key, "", kept[(provider, key, region)],
                            f"{source}#{region}"))  # fmt: skip
    return rows


def regional(rows: list[dict[str, str]], source: Path | None, seeds: Path) -> list[dict[str, str]]:
    """Libcloud's regional rows, weighed; with `source` (the wheel or pricing.json) the
    GPU part is taken again from it and kept in LIBCLOUD."""
    facts = instance_facts(rows)
    if source is not None:
        doc, ec2 = read_libcloud(source)
        if ec2 is not None:
            differences = check_specs(ec2)
            for line in differences:
                print(f"spec check: {line}")
            print(
                f"spec check: {SPECS.name} against libcloud's EC2 facts, "
                f"{len(differences)} differences"
            )
        part = gpu_part(doc, facts)
        LIBCLOUD.write_text(json.dumps(part, indent=1, sort_keys=True) + "\n")
        if not any("gpu" in f or "a2" in f or "a3" in f for f in doc["compute"]["gce_instances"]):
            print("libcloud has no GCP GPU prices (gce_instances: CPU and RAM SKUs only)")
    else:
        part = json.loads(LIBCLOUD.read_text())
    kept, report = weigh(part, facts, claims(rows, seeds))
    for line in report:
        print(f"check: {line}")
    regionless = {(r["provider"], type_key(r["instance_type"])) for r in rows
                  if r["instance_type"] and not r["region"]}  # fmt: skip
    return libcloud_rows(part, facts, kept, regionless)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "pricing"))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument(
        "--libcloud",
        help="apache-libcloud's wheel or its pricing.json: take "
        f"the GPU prices again (else {LIBCLOUD.relative_to(ROOT)})",
    )
    ap.add_argument(
        "--seeds",
        default=str(ROOT.parent / "shared" / "seeds"),
        help="the seed documents, whose price tables are checked against",
    )
    args = ap.parse_args()
    data = Path(args.data)
    rows = fullstack(data / "fullstack-cloud-gpus" / "cloud-gpus.csv")
    rows += gcp(data / "opencost-pricing-fixtures" / "gcp_billing_catalog_skus.json")
    rows += oci(data / "opencost-pricing-fixtures" / "oci_prices_usd.json")
    rows += regional(rows, Path(args.libcloud) if args.libcloud else None, Path(args.seeds))
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
