"""`share-gpu`: model servers on the same GPU model whose combined load fits one GPU, packed
into as few GPUs as will hold them, shared by time-slicing or MPS."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import Field

from aifinops.core.recommend.base import (
    Facts,
    Finding,
    GpuHolding,
    RuleConfig,
    finding_id,
    percentile,
    rule,
    severity_of,
)
from aifinops.core.recommend.usage_common import (
    busy_share,
    capped,
    confidence,
    gib,
    held,
    joined_scope,
    memory_values,
    pct,
    r4,
    to_yaml,
    window,
)

RISK_FACTOR = 0.8  # sharing trades latency for GPUs: the confidence says so
RISK = (
    "latency under contention: the servers' requests queue for the same GPU, so response "
    "times rise when their peaks meet; watch p99 latency after the move"
)


class ShareGpuConfig(RuleConfig):
    percentile: float = Field(default=95, ge=0, le=100)
    max_busy: float = Field(default=0.8, gt=0, le=1)  # combined busy share one GPU may carry
    memory_headroom: float = Field(default=0.1, ge=0)  # combined memory <= GPU / (1 + this)


@dataclass(frozen=True)
class _Load:
    """One server's hourly busy share and peak memory, or a bin's sums of them, on the
    hours of its GPU-model group (0 where none of its members held a GPU); with the
    statistics the packing compares."""

    members: tuple[GpuHolding, ...]
    busy: list[float]
    memory: list[float]
    present: list[bool]  # some member held a GPU in that hour
    everywhere: bool  # in every hour of the group
    busy_p: float  # the percentile over its present hours
    memory_peak: float
    peak_at: int  # the hour of its memory peak
    top: Callable[[list[float]], Sequence[float]]  # a series' values at its busiest hours
    top_busy: Sequence[float]  # its own values there (as many as at or above the percentile)


def _load(members: tuple[GpuHolding, ...], busy: list[float], memory: list[float],
          present: list[bool], q: float) -> _Load:  # fmt: skip
    everywhere = all(present)
    hours = range(len(busy)) if everywhere else [i for i, p in enumerate(present) if p]
    on = [busy[i] for i in hours]
    ranked = sorted(hours, key=busy.__getitem__)
    low = int((len(on) - 1) * q / 100) if on else 0  # the percentile lies at or above rank low
    peak_at = max(hours, key=memory.__getitem__, default=0)
    top = _picker(ranked[low:])
    return _Load(members, busy, memory, present, everywhere, percentile(on, q),
                 memory[peak_at] if on else 0.0, peak_at, top, top(busy))  # fmt: skip


def _picker(hours: list[int]) -> Callable[[list[float]], Sequence[float]]:
    """The values of a series at these hours (one itemgetter call: fast)."""
    if len(hours) == 1:
        only = hours[0]
        return lambda series: (series[only],)
    return operator.itemgetter(*hours)


def _server(holding: GpuHolding, index: dict[int, int], q: float) -> _Load:
    """A server's series; an hour whose memory no sample measured counts at its peak."""
    peak = max(memory_values(holding))
    busy, memory, present = [0.0] * len(index), [0.0] * len(index), [False] * len(index)
    for hour in held(holding):
        i = index[hour.start_ms]
        mib = peak if math.isnan(hour.memory_mib) else hour.memory_mib
        busy[i], memory[i], present[i] = busy_share(hour), mib, True
    return _load((holding,), busy, memory, present, q)


def _cannot_fit(a: _Load, b: _Load, limit: float, max_busy: float) -> bool:
    """A quick no, without adding the whole series. Memory: the sums' peak is at least the
    sum at either one's peak hour. Busy (on the same hours): the percentile is at least the
    sum's value of rank `low`, which is at least the smallest sum over any n - low hours,
    such as either one's busiest."""
    memory = max(a.memory_peak + b.memory[a.peak_at], b.memory_peak + a.memory[b.peak_at])
    if memory > limit:
        return True
    if not (a.everywhere and b.everywhere):
        return False
    busy: float = max(min(map(operator.add, a.top_busy, a.top(b.busy))),
                      min(map(operator.add, b.top_busy, b.top(a.busy))))  # fmt: skip
    return busy > max_busy


def _fit(a: _Load, b: _Load, limit: float, config: ShareGpuConfig) -> _Load | None:
    """The two as one bin, if it fits one GPU (memory first: the cheaper test)."""
    if _cannot_fit(a, b, limit, config.max_busy):
        return None
    memory = list(map(operator.add, a.memory, b.memory))
    if max(memory) > limit:
        return None
    busy = list(map(operator.add, a.busy, b.busy))
    present = a.present if a.everywhere else list(map(operator.or_, a.present, b.present))
    on = busy if all(present) else [x for x, p in zip(busy, present, strict=True) if p]
    if percentile(on, config.percentile) > config.max_busy:
        return None
    return _load(a.members + b.members, busy, memory, present, config.percentile)


@rule("share-gpu", ShareGpuConfig)
def share_gpu(facts: Facts, config: ShareGpuConfig, now_ms: int) -> list[Finding]:
    """1. Take the model servers (`serving`) that hold one GPU each (one replica of one
       GPU), grouped by GPU model.
    2. Each hour a bin's load is the sum of its members' busy shares (as if they ran at
       once: the share each had while it held its GPU) and of their peak memory. A bin
       fits one GPU when the chosen percentile of its hourly busy sum is at most
       `max_busy` and its largest hourly memory sum at most the GPU's memory / (1 +
       memory_headroom) (memory has no percentile: over-committing it fails, not slows).
    3. First fit, largest first (by the larger of busy / max_busy and memory / limit).
    4. A bin of k servers frees k - 1 GPUs: the saving is the run-rate of its cheapest
       k - 1 members. Confidence: min(1, fewest held hours / 24) x 0.8 for the risk."""
    groups: dict[str, list[GpuHolding]] = {}
    for holding in facts.holdings:
        one_gpu = holding.gpus == 1 and holding.replicas == 1
        if holding.serving and one_gpu and memory_values(holding):  # memory measured
            groups.setdefault(holding.gpu_model, []).append(holding)
    out: list[Finding] = []
    for model, servers in sorted(groups.items()):
        gpu_mib = min((h.gpu_memory_mib for h in servers if h.gpu_memory_mib > 0), default=0.0)
        limit = gpu_mib / (1 + config.memory_headroom)
        if not limit > 0:  # the GPU's memory unknown (NaN) or 0: nothing can be said to fit
            continue
        starts = sorted({hour.start_ms for h in servers for hour in held(h)})
        index = {start: i for i, start in enumerate(starts)}
        loads = [_server(h, index, config.percentile) for h in servers]
        own = {load.members[0].workload: load for load in loads}
        out += [_finding(facts, config, model, gpu_mib, limit, b, own)
                for b in _pack(loads, config, limit)]  # fmt: skip
    return out


def _pack(loads: list[_Load], config: ShareGpuConfig, limit: float) -> list[_Load]:
    """First fit, largest first; only the bins of two servers or more."""

    def size(load: _Load) -> tuple[float, str]:
        busy = load.busy_p / config.max_busy
        return max(busy, load.memory_peak / limit), load.members[0].workload

    bins: list[_Load] = []
    for load in sorted(loads, key=size, reverse=True):
        for i, candidate in enumerate(bins):
            merged = _fit(candidate, load, limit, config)
            if merged is not None:
                bins[i] = merged
                break
        else:
            bins.append(load)
    return [b for b in bins if len(b.members) > 1]


def _finding(facts: Facts, config: ShareGpuConfig, model: str, gpu_mib: float, limit: float,
             shared: _Load, own: dict[str, _Load]) -> Finding:  # fmt: skip
    members = sorted(shared.members, key=lambda h: h.workload)
    k = len(members)
    costs = sorted(facts.run_rate(h) for h in members)
    saving = capped(sum(costs[: k - 1], Decimal(0)), sum(costs, Decimal(0)))
    busy, memory = shared.busy_p, shared.memory_peak
    names = [h.workload for h in members]
    scope = joined_scope(members)
    evidence: dict[str, Any] = {
        "gpu_model": model, "workloads": names, "percentile": config.percentile,
        "members": [{"workload": h.workload, "busy_share": r4(own[h.workload].busy_p),
                     "peak_memory_mib": round(own[h.workload].memory_peak, 1),
                     "held_hours": round(h.held_hours, 4),
                     "monthly_cost": str(facts.run_rate(h))} for h in members],
        "combined_busy_share": r4(busy), "max_busy": config.max_busy,
        "combined_peak_memory_mib": round(memory, 1), "gpu_memory_mib": gpu_mib,
        "memory_limit_mib": round(limit, 1), "gpus_freed": k - 1, "risk": RISK,
        **window(facts),
    }  # fmt: skip
    plugin = to_yaml({"version": "v1", "sharing": {"timeSlicing": {"resources": [
        {"name": "nvidia.com/gpu", "replicas": k}]}}}).rstrip("\n")  # fmt: skip
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "aifinops-time-slicing", "namespace": "gpu-operator"},
                  "data": {f"share-{k}": plugin}}  # fmt: skip
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": members[0].node,
                         "labels": {"nvidia.com/device-plugin.config": f"share-{k}"}}}  # fmt: skip
    comments = [
        f"the GPU Operator's device plugin offers each GPU of a node labelled share-{k} as "
        f"{k} nvidia.com/gpu; schedule {', '.join(names)} there",
        "for MPS instead, write sharing.mps.resources[].replicas in the same config",
    ]
    action = (
        f"Share one {model} among {k} model servers ({', '.join(names)}) by time-slicing or "
        f"MPS: together they are {pct(busy)} busy (p{config.percentile:g}, at most "
        f"{pct(config.max_busy)}) and use at most {gib(memory)} of GPU memory (limit "
        f"{gib(limit)}); this frees {k - 1} GPU{'s' if k > 2 else ''}. Risk: {RISK}"
    )
    return Finding(
        id=finding_id("share-gpu", scope), rule="share-gpu", severity=severity_of(saving),
        scope=scope, evidence=evidence, monthly_saving=saving,
        confidence=confidence(min(h.held_hours for h in members), RISK_FACTOR),
        action=action, patch=to_yaml(config_map, node, comments=comments),
    )  # fmt: skip
