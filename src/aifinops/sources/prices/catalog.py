"""The bundled GPU price catalog (`data/catalog.csv`, built by `scripts/build_catalog.py`
from the facts in `shared/data/pricing`; see `data/CATALOG_SOURCE.md`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from importlib import resources
from typing import Any

from aifinops.core.pricing import CatalogOffer


def _dec(text: str | None) -> Decimal | None:
    return Decimal(text) if text is not None and str(text).strip() else None


def offer_from_row(row: Mapping[str, Any]) -> CatalogOffer:
    """An offer from a row of text (a line of catalog.csv, or a cached price-API answer)."""
    return CatalogOffer(
        provider=row["provider"],
        region=row["region"] or None,
        instance_type=row["instance_type"] or "",
        gpu_model=row["gpu_model"] or None,
        gpu_count=int(row["gpu_count"]),
        vcpus=_dec(row["vcpus"]) or Decimal(0),
        memory_gib=_dec(row["memory_gib"]) or Decimal(0),
        on_demand_hourly=Decimal(row["on_demand_hourly"]),
        spot_hourly=_dec(row["spot_hourly"]),
        commit_1y_hourly=_dec(row.get("commit_1y_hourly")),
        commit_3y_hourly=_dec(row.get("commit_3y_hourly")),
        per_gpu_hourly=_dec(row.get("per_gpu_hourly")),
        gpu_component_hourly=_dec(row.get("gpu_component_hourly")),
        source=row.get("source") or "",
        as_of=row.get("as_of") or "",
    )


def offer_to_row(offer: CatalogOffer) -> dict[str, str]:
    """An offer as a row of text, the inverse of `offer_from_row` (decimals exact)."""
    out = {}
    for name in CatalogOffer.__dataclass_fields__:
        value = getattr(offer, name)
        out[name] = "" if value is None else str(value)
    return out


def offers_to_json(offers: Sequence[CatalogOffer]) -> str:
    return json.dumps([offer_to_row(o) for o in offers])


def offers_from_json(text: str) -> list[CatalogOffer]:
    return [offer_from_row(row) for row in json.loads(text)]


def bundled_offers() -> list[CatalogOffer]:
    text = resources.files("aifinops.data").joinpath("catalog.csv").read_text(encoding="utf-8")
    return [offer_from_row(row) for row in csv.DictReader(text.splitlines())]
