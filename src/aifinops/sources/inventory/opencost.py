"""OpenCost's `/allocation/compute` responses, for users who already run OpenCost.

The documented shape: `{"code": 200, "data": [{NAME: ALLOCATION, ...}, ...]}`, one map per
step, each allocation with `properties` (cluster, node, namespace, pod, container,
controller, controllerKind, labels, namespaceLabels), `start`/`end`, and costs
(`gpuCost`, `cpuCost`, `ramCost`, their `*CostAdjustment`, `pvCost`, `networkCost`,
`loadBalancerCost`, `sharedCost`, `externalCost`, `totalCost`) and `gpuHours`. OpenCost's
own `__idle__` and `__unallocated__` entries keep their meaning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aifinops.core.windows import iso_ms
from aifinops.errors import InputError
from aifinops.sources.inputs import load_json
from aifinops.sources.labels import map_labels

_OTHER = ("pvCost", "networkCost", "loadBalancerCost", "sharedCost", "externalCost")


def read_allocations(text: str, where: str, wanted: Iterable[str] = ()) -> list[dict[str, Any]]:
    doc = load_json(text, where)
    if isinstance(doc, dict) and doc.get("code", 200) != 200:
        message = doc.get("message") or doc.get("error")
        raise InputError(f"OpenCost answered code {doc.get('code')}: {message}", where=where)
    if not isinstance(doc, dict) or "data" not in doc:
        raise InputError(
            "not an OpenCost allocation response (no `data`)",
            where=where,
            hint="save the answer of GET /allocation/compute?window=...&aggregate=pod,container"
            " (or /allocation)",
        )
    steps = doc["data"] if isinstance(doc["data"], list) else [doc["data"]]
    keys = list(wanted)
    rows = []
    for i, step in enumerate(steps):
        for name, a in (step or {}).items():
            if not isinstance(a, dict):
                continue
            try:
                rows.append(_row(name, a, keys))
            except (KeyError, TypeError, ValueError) as error:
                raise InputError(
                    f"allocation {name!r} of step {i}: {error!r}", where=where
                ) from error
    return rows


def _f(a: Mapping[str, Any], key: str) -> float:
    value = a.get(key)
    return float(value) if value not in (None, "") else 0.0


def _row(name: str, a: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    p = a.get("properties") or {}
    window = a.get("window") or {}
    start, end = a.get("start") or window.get("start"), a.get("end") or window.get("end")
    if not start or not end:
        raise ValueError("no start/end (or window) given")
    kind, ctrl = p.get("controllerKind"), p.get("controller")
    return {
        "source": "opencost",
        "name": name,
        "start_ms": iso_ms(start),
        "end_ms": iso_ms(end),
        "cluster": p.get("cluster"),
        "node_id": p.get("node"),
        "namespace": p.get("namespace"),
        "pod": p.get("pod"),
        "container": p.get("container"),
        "controller": f"{kind}/{ctrl}" if kind and ctrl else ctrl,
        "labels": map_labels(p.get("labels"), wanted),
        "namespace_labels": map_labels(p.get("namespaceLabels"), wanted),
        "gpu_hours": _f(a, "gpuHours"),
        "gpu_cost": _f(a, "gpuCost") + _f(a, "gpuCostAdjustment"),
        "cpu_cost": _f(a, "cpuCost") + _f(a, "cpuCostAdjustment"),
        "ram_cost": _f(a, "ramCost") + _f(a, "ramCostAdjustment"),
        "other_cost": sum(_f(a, k) for k in _OTHER),
        "total_cost": _f(a, "totalCost"),
    }
