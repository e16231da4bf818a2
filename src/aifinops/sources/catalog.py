"""The bundled GPU price catalog (`data/catalog.csv`, built by `scripts/build_catalog.py`
from the facts in `shared/data/pricing`; see `data/CATALOG_SOURCE.md`)."""

from __future__ import annotations

import csv
from decimal import Decimal
from importlib import resources

from aifinops.core.pricing import CatalogOffer


def _dec(text: str) -> Decimal | None:
    return Decimal(text) if text.strip() else None


def bundled_offers() -> list[CatalogOffer]:
    text = resources.files("aifinops.data").joinpath("catalog.csv").read_text(encoding="utf-8")
    offers = []
    for row in csv.DictReader(text.splitlines()):
        offers.append(
            CatalogOffer(
                provider=row["provider"],
                region=row["region"] or None,
                instance_type=row["instance_type"],
                gpu_model=row["gpu_model"] or None,
                gpu_count=int(row["gpu_count"]),
                vcpus=_dec(row["vcpus"]) or Decimal(0),
                memory_gib=_dec(row["memory_gib"]) or Decimal(0),
                on_demand_hourly=Decimal(row["on_demand_hourly"]),
                spot_hourly=_dec(row["spot_hourly"]),
                commit_1y_hourly=_dec(row["commit_1y_hourly"]),
                commit_3y_hourly=_dec(row["commit_3y_hourly"]),
                per_gpu_hourly=_dec(row["per_gpu_hourly"]),
                gpu_component_hourly=_dec(row["gpu_component_hourly"]),
                source=row["source"],
                as_of=row["as_of"],
            )
        )
    return offers
