"""`/api/v1/allocation` in OpenCost's shape, so OpenCost's clients read aifinops: its query
parameters (`window`, `aggregate`, `step`, `idle`, `shareIdle`) and its response
(`{"code": 200, "data": [{name: allocation, ...}, ...]}`, one map per step), with the GPU
fields (`gpuHours`, `gpuCost`, `gpuRequestAverage`, `gpuUsageAverage`).

What aifinops does not measure is given as OpenCost gives what it does not have: zero
(network, load balancers, persistent volumes; CPU and RAM requests and usage averages)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aifinops.core.model import ATTRIBUTED_DIMENSIONS, CostReport, CostRow
from aifinops.core.windows import parse_instant
from aifinops.errors import UsageError

# OpenCost's aggregate names -> our dimensions (label:KEY through the attribution keys)
AGGREGATES = {
    "namespace": "namespace",
    "node": "node",
    "pod": "workload",
    "controller": "workload",
    "cluster": None,
}
HINT = (
    "namespace, node, pod, controller, cluster, or label:KEY for a key that names a team, "
    "project, model, environment, experiment, cost center or owner"
)
ZERO_FIELDS = (
    "cpuCores",
    "cpuCoreRequestAverage",
    "cpuCoreUsageAverage",
    "cpuCoreHours",
    "cpuCostAdjustment",
    "gpuCostAdjustment",
    "networkCost",
    "networkCostAdjustment",
    "loadBalancerCost",
    "loadBalancerCostAdjustment",
    "pvBytes",
    "pvByteHours",
    "pvCost",
    "pvCostAdjustment",
    "ramBytes",
    "ramByteRequestAverage",
    "ramByteUsageAverage",
    "ramByteHours",
    "ramCostAdjustment",
    "sharedCost",
    "externalCost",
)


def dimensions(aggregate: str, label_keys: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Our group-by for OpenCost's `aggregate` (comma-separated)."""
    out: list[str] = []
    for part in (p.strip() for p in aggregate.split(",") if p.strip()):
        if part.startswith("label:"):
            key = part[len("label:") :]
            dim = next(
                (d for d in ATTRIBUTED_DIMENSIONS if key == d or key in label_keys.get(d, ())), None
            )
            if dim is None:
                raise UsageError(f"cannot aggregate by {part!r}", where="aggregate", hint=HINT)
            out.append(dim)
        elif part in AGGREGATES:
            if AGGREGATES[part] is not None:
                out.append(str(AGGREGATES[part]))
        else:
            raise UsageError(f"cannot aggregate by {part!r}", where="aggregate", hint=HINT)
    return tuple(dict.fromkeys(out))


def response(report: CostReport, dims: tuple[str, ...], idle: bool) -> dict[str, Any]:
    """The report as OpenCost's allocation response: one map of name -> allocation per
    step (one map for the whole window without a step)."""
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    window = report.window.iso()
    for row in report.rows:
        if not idle and row.is_bucket("__idle__"):
            continue
        start, end = row.start or window["start"], row.end or window["end"]
        name = "/".join(row.key[d] for d in dims) if dims else "__all__"
        if any(
            row.is_bucket(b) for b in ("__idle__", "__unallocated__", "__unpriced__", "__shared__")
        ):
            name = next(v for v in row.key.values() if v.startswith("__"))
        steps.setdefault((start, end), {})[name] = allocation(name, row, dims, start, end)
    data = [steps[k] for k in sorted(steps)]
    return {"code": 200, "data": data or [{}]}


def allocation(
    name: str, row: CostRow, dims: tuple[str, ...], start: str, end: str
) -> dict[str, Any]:
    minutes = Decimal(str((parse_instant(end) - parse_instant(start)).total_seconds())) / 60
    hours = minutes / 60
    req = row.gpu_hours / hours if hours else Decimal(0)
    use = row.used_gpu_hours / hours if hours else Decimal(0)
    eff = row.gpu_efficiency
    props = {d: row.key[d] for d in dims}
    if "workload" in props:
        ns, _, pod = props.pop("workload").partition("/")
        props.update({"namespace": ns, "pod": pod or ns})
    gpu = {
        "gpuRequestAverage": _f(req),
        "gpuUsageAverage": _f(use),
        "isGPUShared": None,
        "gpuDevice": None,
        "gpuModel": None,
    }
    return {
        "name": name,
        "properties": props,
        "window": {"start": start, "end": end},
        "start": start,
        "end": end,
        "minutes": _f(minutes),
        "gpuCount": _f(req),
        "gpuHours": _f(row.gpu_hours),
        "gpuCost": _f(row.gpu_cost),
        "gpuRequestAverage": gpu["gpuRequestAverage"],
        "gpuUsageAverage": gpu["gpuUsageAverage"],
        "gpuEfficiency": _f(eff) if eff is not None else 0.0,
        "gpuAllocation": gpu,
        "cpuCost": _f(row.cpu_cost),
        "ramCost": _f(row.ram_cost),
        **dict.fromkeys(ZERO_FIELDS, 0.0),
        "totalCost": _f(row.total_cost),
        "totalEfficiency": _f(eff) if eff is not None else 0.0,
    }


def _f(value: Decimal) -> float:
    return float(round(value, 9))
