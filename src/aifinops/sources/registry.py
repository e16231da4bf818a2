"""Every source kind, by name. The kinds register themselves (`base.register`) when their
module is imported; this module imports them only when asked, so that a command that reads
no source does not pay for them."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from aifinops.sources.base import REGISTRY, Source, SourceConfig, needs

# the modules that hold the built-in kinds (each registers its own)
MODULES = (
    "aifinops.sources.telemetry.kinds",
    "aifinops.sources.telemetry.prometheus_pull",
    "aifinops.sources.inventory.kinds",
    "aifinops.sources.serving.kinds",
)


def kinds() -> dict[str, type[Source]]:
    """Every registered kind, by name."""
    for module in MODULES:
        importlib.import_module(module)
    return REGISTRY


def kind(name: str) -> type[Source]:
    found = kinds().get(name)
    if found is None:
        raise KeyError(name)
    return found


def parse_configs(items: list[Any]) -> list[SourceConfig]:
    """Configured sources (dicts from the config file), each validated by the config model
    of the kind its `kind:` names (the union of the kinds' configs, chosen by `kind`)."""
    found = kinds()
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"a source is a mapping with a name and a kind, not {item!r}")
        name, kind = item.get("name", ""), item.get("kind")
        if kind not in found:
            raise ValueError(f"unknown kind {kind!r}; known: {', '.join(found)}")
        config = found[kind].config
        missing = [k for k in needs(config) if item.get(k) in (None, "")]
        if missing:
            raise ValueError(f"source {name!r} ({kind}) needs {', '.join(missing)}")
        try:
            out.append(config.model_validate(item))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"source {name!r} ({kind}): {problems}") from None
    return out


def describe() -> list[dict[str, Any]]:
    """What `aifinops sources list` shows of each kind."""
    return [
        {
            "kind": k.kind,
            "mode": k.mode,
            "needs": needs(k.config),
            "default_interval": k.default_interval,
            "description": k.description,
        }
        for k in kinds().values()
    ]
