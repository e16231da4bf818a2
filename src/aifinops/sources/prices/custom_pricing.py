"""OpenCost's custom pricing CSV, read as is:

    EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,MarketPriceHourly,Version

A `node` row prices the nodes whose `InstanceIDField` (`metadata.name`, `spec.providerID`,
`metadata.labels.<key>`) equals `InstanceID`, in `Region` when given; a `gpu` row prices each
GPU of the nodes whose label `InstanceIDField` (e.g. `nvidia.com/gpu_type`) equals
`InstanceID`. `pv` rows (volumes) are not GPU costs and are skipped with a note.
"""

from __future__ import annotations

import csv
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from aifinops.core.pricing import NodeRule
from aifinops.errors import InputError

COLUMNS = ("InstanceID", "AssetClass", "InstanceIDField", "MarketPriceHourly")
_SLACK_LINK = re.compile(r"<[^|>]*\|([^>]*)>")  # `<http://a.b/c|a.b/c>`, as pasted via Slack


def read_custom_pricing(path: Path) -> tuple[list[NodeRule], list[str]]:
    if not path.is_file():
        raise InputError("no such file", where=str(path))
    rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    header = set(rows[0]) if rows else set()
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"not an OpenCost custom pricing CSV: no {', '.join(missing)} column",
            where=f"{path}:1",
        )
    rules: list[NodeRule] = []
    notes: list[str] = []
    for number, row in enumerate(rows, start=2):
        where = f"{path}:{number}"
        kind = (row["AssetClass"] or "").strip().lower()
        field = (row["InstanceIDField"] or "").strip()
        field = _SLACK_LINK.sub(r"\1", field)
        value = (row["InstanceID"] or "").strip()
        try:
            price = Decimal((row["MarketPriceHourly"] or "").strip())
        except InvalidOperation:
            notes.append(f"{where}: price {row['MarketPriceHourly']!r} is not a number; skipped")
            continue
        if price < 0:
            notes.append(f"{where}: negative price; skipped")
            continue
        region = (row.get("Region") or "").strip() or None
        source = f"custom-pricing:{path.name}"
        if kind == "node":
            if field == "metadata.name":
                match = "name"
            elif field == "spec.providerID":
                match = "provider_id"
            elif field.startswith("metadata.labels."):
                match = "label:" + field[len("metadata.labels.") :]
            else:
                notes.append(f"{where}: node field {field!r} is not understood; skipped")
                continue
            rules.append(NodeRule(match, value, node_hourly=price, region=region, source=source))
        elif kind == "gpu":
            key = (
                field[len("metadata.labels.") :] if field.startswith("metadata.labels.") else field
            )
            rules.append(NodeRule("label:" + key, value, gpu_hourly=price, region=region,
                                  source=source))  # fmt: skip
        elif kind == "pv":
            notes.append(f"{where}: volume prices are not GPU costs; skipped")
        else:
            notes.append(f"{where}: asset class {kind!r} is not understood; skipped")
    return rules, notes
