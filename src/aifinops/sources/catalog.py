"""The bundled price table, read into catalog offers."""

from __future__ import annotations

import csv
from decimal import Decimal
from importlib import resources

from aifinops.core.pricing import CatalogOffer


def bundled_offers() -> list[CatalogOffer]:
    text = resources.files("aifinops.data").joinpath("prices.csv").read_text(encoding="utf-8")
    offers = []
    for row in csv.DictReader(text.splitlines()):
        offers.append(
            CatalogOffer(
                provider=row["provider"],
                region=row["region"] or None,
                instance_type=row["instance_type"],
                gpu_model=row["gpu_model"] or None,
                gpu_count=int(row["gpu_count"]),
                vcpus=Decimal(row["vcpus"]),
                memory_gib=Decimal(row["memory_gib"]),
                on_demand_hourly=Decimal(row["on_demand_hourly"]),
                spot_hourly=Decimal(row["spot_hourly"]) if row["spot_hourly"] else None,
                source=row["source"],
                as_of=row["as_of"],
            )
        )
    return offers
