"""What the usage rules (idle, overprovisioned, rightsize, share) read off a holding's
hourly series, how they word numbers, and the small YAML writer their patches use (core/
may not import a YAML library)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aifinops.core.recommend.base import Facts, GpuHolding, HourUse
from aifinops.core.windows import from_ms

CENT = Decimal("0.01")
FULL_CONFIDENCE_HOURS = 24  # a day of held hours: every hour of a daily cycle seen once

# kinds whose pod template a patch can change, and where that template sits in the object
TEMPLATE_PATH: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "Deployment": ("apps/v1", ("spec", "template", "spec")),
    "StatefulSet": ("apps/v1", ("spec", "template", "spec")),
    "Job": ("batch/v1", ("spec", "template", "spec")),
    "CronJob": ("batch/v1", ("spec", "jobTemplate", "spec", "template", "spec")),
}
SCALABLE = ("Deployment", "StatefulSet")  # kinds with `spec.replicas`


# -- the series --------------------------------------------------------------------------


def held(holding: GpuHolding) -> list[HourUse]:
    """The hours in which it held GPUs (the only hours a percentile is taken over)."""
    return [h for h in holding.hours if h.held_gpus > 0]


def busy_share(hour: HourUse) -> float:
    """Busy GPU-time over held GPU-time in the hour, 0 to 1."""
    return min(1.0, max(0.0, hour.busy_gpus / hour.held_gpus)) if hour.held_gpus > 0 else 0.0


def busy_shares(holding: GpuHolding) -> list[float]:
    return [busy_share(h) for h in held(holding)]


def mean_busy_share(holding: GpuHolding) -> float:
    """All its busy GPU-time over all its held GPU-time (weighted by held time, unlike a
    mean of the hourly shares)."""
    hours = held(holding)
    total = sum(h.held_gpus for h in hours)
    return min(1.0, sum(h.busy_gpus for h in hours) / total) if total else 0.0


def memory_values(holding: GpuHolding) -> list[float]:
    """Its hourly peak memory (MiB) in the held hours where it is known (the engine writes
    NaN for an hour no sample measured)."""
    return [h.memory_mib for h in held(holding) if not math.isnan(h.memory_mib)]


def peak_memory_mib(holding: GpuHolding) -> float | None:
    return max(memory_values(holding), default=None)


def confidence(held_hours: float, factor: float = 1.0) -> Decimal:
    """Grows with the evidence: min(1, held hours / 24) x factor, to 2 places."""
    value = min(1.0, held_hours / FULL_CONFIDENCE_HOURS) * factor
    return Decimal(str(round(value, 2))).quantize(CENT)


def capped(saving: Decimal, cost: Decimal) -> Decimal:
    """A saving in cents, never below 0 nor above the cost it comes out of."""
    value = min(saving, cost).quantize(CENT, rounding=ROUND_HALF_UP)
    return max(Decimal(0), min(value, cost))


# -- words and evidence ------------------------------------------------------------------


def iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


def window(facts: Facts) -> dict[str, str]:
    return {"window_start": iso(facts.start_ms), "window_end": iso(facts.end_ms)}


def scope_of(holding: GpuHolding) -> dict[str, str]:
    return {"team": holding.team, "namespace": holding.namespace,
            "workload": holding.workload, "node": holding.node}  # fmt: skip


def joined_scope(holdings: Sequence[GpuHolding]) -> dict[str, str]:
    """The scope of a group: each field's distinct values, sorted, joined by commas."""
    keys = ("team", "namespace", "workload", "node")
    return {k: ",".join(sorted({scope_of(h)[k] for h in holdings})) for k in keys}


def r4(x: float) -> float:
    return round(x, 4)


def gib(mib: float | None) -> str:
    return "unknown" if mib is None or math.isnan(mib) else f"{mib / 1024:.1f} GiB"


def pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def hours_text(hours: float) -> str:
    if hours >= 1:
        n = round(hours)
        return f"{n} hour" + ("s" if n != 1 else "")
    minutes = max(1, round(hours * 60))
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


def gpus_text(n: float) -> str:
    count = int(n) if float(n).is_integer() else n
    return f"{count} GPU" + ("" if count == 1 else "s")


def name_of(holding: GpuHolding) -> str:
    """The Kubernetes object's name: the workload id without its namespace."""
    return holding.workload.rsplit("/", 1)[-1]


def container_of(holding: GpuHolding) -> str:
    """The container a resources patch names: the `container` label, else the object's
    name (a strategic merge patch matches containers by name)."""
    return holding.labels.get("container") or name_of(holding)


# -- patches -----------------------------------------------------------------------------


def object_patch(holding: GpuHolding, body: Mapping[str, Any]) -> dict[str, Any]:
    """The object's header (apiVersion, kind, name, namespace) and `body` merged under it."""
    api = TEMPLATE_PATH.get(holding.kind, ("apps/v1", ()))[0]
    return {"apiVersion": api, "kind": holding.kind,
            "metadata": {"name": name_of(holding), "namespace": holding.namespace},
            **body}  # fmt: skip


def pod_spec_patch(holding: GpuHolding, pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """`pod_spec` placed where the kind keeps its pod template; None for a kind without one
    a patch can change (a bare Pod, a Notebook: their spec is fixed once running)."""
    if holding.kind not in TEMPLATE_PATH:
        return None
    nested: Any = dict(pod_spec)
    for key in reversed(TEMPLATE_PATH[holding.kind][1]):
        nested = {key: nested}
    return object_patch(holding, nested)


def gpu_resources_patch(holding: GpuHolding, resources: Mapping[str, Any]) -> dict[str, Any] | None:
    """Set the container's GPU requests and limits (extended resources need both equal)."""
    container = {"name": container_of(holding),
                 "resources": {"limits": dict(resources), "requests": dict(resources)}}  # fmt: skip
    return pod_spec_patch(holding, {"containers": [container]})


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if isinstance(item, Mapping | list) and item:
                out.append(head)
                out += _lines(item, indent + (0 if isinstance(item, list) else 2))
            elif isinstance(item, str) and "\n" in item:
                out.append(f"{head} |-")
                out += [f"{pad}  {line}" for line in item.splitlines()]
            else:
                empty = "{}" if isinstance(item, Mapping) else "[]"
                text = empty if isinstance(item, Mapping | list) else _scalar(item)
                out.append(f"{head} {text}")
        return out
    for item in value:
        if isinstance(item, Mapping | list) and item:
            inner = _lines(item, indent + 2)
            out.append(f"{pad}- {inner[0].lstrip()}")
            out += inner[1:]
        else:
            out.append(f"{pad}- {_scalar(item)}")
    return out


def to_yaml(*documents: Mapping[str, Any], comments: Sequence[str] = ()) -> str:
    """Block-style YAML of plain dicts, lists and scalars; several documents split by
    `---`; `comments` as `#` lines on top."""
    head = "".join(f"# {c}\n" for c in comments)
    return head + "---\n".join("\n".join(_lines(d, 0)) + "\n" for d in documents)
