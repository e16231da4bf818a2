"""What the price rules (spot, commitments, off-hours, offers, unattributed) share: a
holding's monthly run-rate, the catalog offer for an instance type, and exact decimals
from the float series.

A holding's run-rate is its cost in the look-back window spread over the window and
scaled to a month (`MONTH_HOURS`): a Job held 10 % of the window runs at 10 % of the cost
of holding it all month. It is never the window's total multiplied by anything."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from decimal import Decimal

from aifinops.core.pricing import type_key
from aifinops.core.recommend.base import Facts, GpuHolding, Offer

HOUR_MS = 3_600_000
ANY_REGION = "any region"  # a region-less catalog row answers any region (CATALOG_SOURCE.md)


def dec(value: float) -> Decimal:
    """A float of the hourly series as a decimal, by its shortest repr (0.1 -> 0.1, not
    0.1000000000000000055...), so that money stays readable."""
    return Decimal(repr(value))


def monthly_run_rate(holding: GpuHolding, facts: Facts) -> Decimal:
    """Its cost in the window (cost per hour held x hours held) over the window's hours, as
    a month; at most a month held throughout (`GpuHolding.monthly_cost`)."""
    return facts.run_rate(holding)


def held_share(holding: GpuHolding, facts: Facts) -> Decimal:
    """The share of the window it held what it asked for (0 to 1)."""
    if facts.hours <= 0:
        return Decimal(0)
    return min(Decimal(1), dec(holding.held_hours) / dec(facts.hours))


def workload_name(holding: GpuHolding) -> str:
    """`namespace/pod` or a controller's name -> the name a kubectl command takes."""
    return holding.workload.rsplit("/", 1)[-1]


def workload_scope(holding: GpuHolding) -> dict[str, str]:
    """What a per-workload finding is about; the node is left out so that the finding keeps
    its id when the pod moves."""
    return {"team": holding.team, "namespace": holding.namespace, "workload": holding.workload}


def region_label(offer: Offer) -> str:
    return offer.region or ANY_REGION


def find_offer(
    offers: Iterable[Offer],
    provider: str,
    region: str | None,
    instance_type: str,
    usable: Callable[[Offer], bool],
) -> Offer | None:
    """The catalog offer for this instance type in this provider and region that has the
    prices the rule needs (`usable`); else the provider's region-less offer (the catalog's
    fallback, which answers any region); else None. Prices are never mixed across offers:
    a discount is only meaningful against the on-demand price of the same row."""
    key = type_key(instance_type)
    same = [
        o
        for o in offers
        if o.provider == provider
        and o.instance_type is not None
        and type_key(o.instance_type) == key
        and usable(o)
    ]
    exact = [o for o in same if region and o.region == region]
    anywhere = [o for o in same if not o.region]
    chosen = exact or anywhere
    return chosen[0] if chosen else None


YamlValue = str | bool | int | list["YamlValue"] | dict[str, "YamlValue"]


def to_yaml(value: YamlValue, indent: int = 0) -> str:
    """A small block-style YAML writer for patches (core/ may not import a YAML library):
    strings double-quoted (so `"true"` stays a string), keys plain where they can be."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            name = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{name}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{name}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                first, *rest = to_yaml(item, indent + 1).split("\n")
                lines.append(f"{pad}- {first.lstrip()}")
                lines += rest
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return pad + _scalar(value)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")


def _scalar(value: YamlValue) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)
