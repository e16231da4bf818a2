"""The bundled GPU price catalog (`data/catalog.csv`, built by `scripts/build_catalog.py`
from the facts in `shared/data/pricing`; see `data/CATALOG_SOURCE.md`)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from importlib import resources
from typing import Any

from aifinops.core.pricing import CatalogOffer, type_key
from aifinops.errors import ConfigError

# what a price list of one's own must give (the rest of catalog.csv's columns may be left out)
REQUIRED = ("provider", "instance_type", "gpu_model", "gpu_count", "on_demand_hourly")
COLUMNS = tuple(CatalogOffer.__dataclass_fields__)  # catalog.csv's, in any order
DECIMAL_COLUMNS = ("vcpus", "memory_gib", "on_demand_hourly", "spot_hourly",
                   "commit_1y_hourly", "commit_3y_hourly", "per_gpu_hourly",
                   "gpu_component_hourly")  # fmt: skip
# bounds far above any real instance (the bundled catalog's largest: 16 GPUs, $165 an
# hour) that keep a typo from reaching the cost engine's decimals
MOST_GPUS = 1024
MOST_HOURLY = Decimal(1_000_000)
_WHOLE = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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


def file_offers(path: str) -> list[CatalogOffer]:
    """A price list of one's own (negotiated, reserved or committed prices) in the bundled
    catalog's columns: `provider, instance_type, gpu_model, gpu_count, on_demand_hourly`
    and optionally `region, vcpus, memory_gib, spot_hourly, commit_1y_hourly,
    commit_3y_hourly, per_gpu_hourly, gpu_component_hourly, as_of` (hourly prices of the
    whole instance), in UTF-8 (a byte-order mark and any line endings are fine), header
    names in any case. A bad row is refused with its line, as is a file with no prices or
    one that prices the same instance twice, differently (which would win is not the
    user's to guess); the same row twice counts once. Nothing of the file is used then."""
    from pathlib import Path

    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise ConfigError(f"cannot read the price list: {error.strerror or error}",
                          where=path) from None  # fmt: skip
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"cannot read the price list: {error}",
            where=path,
            hint="save it as UTF-8 (CSV UTF-8, in a spreadsheet)",
        ) from None
    if not text.strip():
        raise ConfigError("the price list is empty", where=path,
                          hint=f"a header line of columns ({', '.join(REQUIRED)}, ...), then "
                          "one line per instance type")  # fmt: skip
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        fields = [f.strip().lower() for f in next(reader)]
        out: list[CatalogOffer] = []
        seen: dict[tuple[str, str, str, str], tuple[int, CatalogOffer]] = {}
        _check_header(fields, path)
        line = reader.line_num + 1  # where the next row starts
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if len(cells) != len(fields):
                raise ConfigError(f"line {start} of the price list has {len(cells)} cells, "
                                  f"the header {len(fields)}", where=path,
                                  hint="one cell per column; quote a cell that holds a "
                                  "comma")  # fmt: skip
            offer = _file_offer(dict(zip(fields, (c.strip() for c in cells), strict=True)),
                                start, path)  # fmt: skip
            key = (offer.provider.lower(), (offer.region or "").lower(),
                   type_key(offer.instance_type), (offer.gpu_model or "").lower())  # fmt: skip
            if key in seen:
                first, earlier = seen[key]
                if earlier == offer:
                    continue  # the same row twice: once
                raise ConfigError(
                    f"lines {first} and {start} of the price list both price {offer.provider} "
                    f"{offer.region or 'any region'} {offer.instance_type}"
                    f"{f' ({offer.gpu_model})' if offer.gpu_model else ''}, differently",
                    where=path, hint="keep one of them")  # fmt: skip
            seen[key] = (start, offer)
            out.append(offer)
    except csv.Error as error:
        raise ConfigError(
            f"line {reader.line_num} of the price list: {error}", where=path
        ) from None
    if not out:
        raise ConfigError("the price list holds no prices, only its header", where=path,
                          hint="one line per instance type under the header")  # fmt: skip
    return out


def _check_header(fields: list[str], path: str) -> None:
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise ConfigError(f"column {', '.join(twice)} is named twice", where=path,
                          hint="one column each")  # fmt: skip
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise ConfigError(f"the price list lacks column(s) {', '.join(missing)}", where=path,
                          hint=f"columns: {', '.join(COLUMNS)}")  # fmt: skip
    unknown = sorted(set(fields) - set(COLUMNS))
    if unknown:
        raise ConfigError(f"unknown column(s) {', '.join(unknown)}", where=path,
                          hint=f"columns: {', '.join(COLUMNS)}")  # fmt: skip


def _file_offer(raw: Mapping[str, str], line: int, path: str) -> CatalogOffer:
    """One row of a price list, every cell checked: plain numbers only (`8_0` or `$80`
    would be read as something the user did not write), within bounds."""

    def bad(column: str, what: str) -> ConfigError:
        value = raw.get(column, "")
        shown = repr(value if len(value) <= 40 else value[:40] + "…")
        return ConfigError(f"line {line} of the price list: {column} {shown} {what}", where=path,
                           hint="gpu_count a whole number, prices decimal numbers (a point "
                           "for decimals) per hour of the whole instance")  # fmt: skip

    for column in ("provider", "instance_type", "gpu_count", "on_demand_hourly"):
        if not raw.get(column):
            raise bad(column, "is empty")
    count = raw["gpu_count"]
    if not (_WHOLE.fullmatch(count) and len(count) <= 6 and 1 <= int(count) <= MOST_GPUS):
        raise bad("gpu_count", f"is not a whole number from 1 to {MOST_GPUS:,}")
    for column in DECIMAL_COLUMNS:
        value = raw.get(column) or ""
        if not value:
            continue
        if not _NUMBER.fullmatch(value):
            raise bad(column, "is not a number of 0 or more")
        if Decimal(value) > MOST_HOURLY:
            raise bad(column, f"is above {MOST_HOURLY:,}")
    row = {c: raw.get(c) or "" for c in COLUMNS}
    row["source"] = row["source"] or path
    return offer_from_row(row)
