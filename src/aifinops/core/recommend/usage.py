"""The usage rules: GPUs held but idle (`idle-gpu`), more GPUs asked for than ever used at
once (`overprovisioned-gpus`); with `rightsize-gpu` (usage_rightsize) and `share-gpu`
(usage_share), which this module imports so that all four register together.

Each reads a holding's hourly series (`HourUse`) and takes a percentile over the hours it
held GPUs, not a mean, so a workload busy an hour a day is not called idle. A saving is a
month of run-rate (`cost_per_hour x MONTH_HOURS`, or a share of it), never the window's
spend scaled up, and never more than the holding's monthly cost."""

from __future__ import annotations

import math
from decimal import Decimal

from pydantic import Field

from aifinops.core.recommend import usage_rightsize, usage_share  # noqa: F401  (register)
from aifinops.core.recommend.base import (
    Facts,
    Finding,
    RuleConfig,
    finding_id,
    percentile,
    rule,
    severity_of,
)
from aifinops.core.recommend.usage_common import (
    SCALABLE,
    busy_shares,
    capped,
    confidence,
    gib,
    gpu_resources_patch,
    gpus_text,
    held,
    hours_text,
    mean_busy_share,
    object_patch,
    pct,
    peak_memory_mib,
    r4,
    scope_of,
    to_yaml,
    window,
)


class IdleGpuConfig(RuleConfig):
    busy_threshold: float = Field(default=0.05, ge=0, le=1)  # busy GPU-time / held GPU-time
    percentile: float = Field(default=95, ge=0, le=100)
    min_hours: float = Field(default=4, ge=0)  # held hours before a workload can be idle


@rule("idle-gpu", IdleGpuConfig)
def idle_gpu(facts: Facts, config: IdleGpuConfig, now_ms: int) -> list[Finding]:
    """A workload whose hourly busy share, at the chosen percentile over the hours it held
    GPUs, stays under `busy_threshold` for at least `min_hours` held hours. Releasing its
    GPUs saves its whole run-rate. Confidence: min(1, held hours / 24)."""
    out: list[Finding] = []
    for holding in facts.holdings:
        shares = busy_shares(holding)
        hours = holding.held_hours
        if not shares or hours < config.min_hours:
            continue
        busy = percentile(shares, config.percentile)
        if busy >= config.busy_threshold:
            continue
        cost = facts.run_rate(holding)
        saving = capped(cost, cost)
        memory = peak_memory_mib(holding)
        gpus = holding.gpus * holding.replicas
        label = f"p{config.percentile:g}"
        per_gpu = " per GPU" if gpus > 1 else ""
        held_memory = f" and {gib(memory)} of GPU memory{per_gpu}" if memory is not None else ""
        scale = holding.kind in SCALABLE
        patch = object_patch(holding, {"spec": {"replicas": 0}}) if scale else None
        out.append(Finding(
            id=finding_id("idle-gpu", scope_of(holding)),
            rule="idle-gpu",
            severity=severity_of(saving),
            scope=scope_of(holding),
            evidence={
                "percentile": config.percentile, "busy_share": r4(busy),
                "busy_threshold": config.busy_threshold, "held_hours": round(hours, 4),
                "mean_busy_share": r4(mean_busy_share(holding)),
                "peak_memory_mib": None if memory is None else round(memory, 1), "gpus": gpus,
                "gpu_model": holding.gpu_model, "cost_per_hour": str(holding.cost_per_hour),
                **window(facts),
            },
            monthly_saving=saving,
            confidence=confidence(hours),
            action=(f"{holding.workload} ({holding.kind}) holds {gpus_text(gpus)} "
                    f"({holding.gpu_model}){held_memory} at {pct(busy)} busy ({label}) over "
                    f"{hours_text(hours)}: stop it or scale it to zero"),
            patch=to_yaml(patch) if patch else None,
        ))  # fmt: skip
    return out


class OverprovisionedGpusConfig(RuleConfig):
    percentile: float = Field(default=99, ge=0, le=100)
    headroom_gpus: int = Field(default=0, ge=0)  # GPUs kept above the measured peak


@rule("overprovisioned-gpus", OverprovisionedGpusConfig)
def overprovisioned_gpus(
    facts: Facts, config: OverprovisionedGpusConfig, now_ms: int
) -> list[Finding]:
    """A workload that requests N > 1 GPUs (per replica) but needs k < N: k is the chosen
    percentile of its hourly peak of GPUs busy at once, rounded up, plus `headroom_gpus`,
    spread over its replicas (at least 1). Saving: (N - k) / N of its run-rate.
    Confidence: min(1, held hours / 24)."""
    out: list[Finding] = []
    for holding in facts.holdings:
        n = holding.gpus
        hours = held(holding)
        if n <= 1 or not hours:
            continue
        peaks = [float(h.peak_gpus) for h in hours]
        peak = percentile(peaks, config.percentile)
        # peak_gpus counts the whole workload (as held_gpus does): share it among replicas
        need = math.ceil(peak - 1e-9) + config.headroom_gpus
        k = max(1, math.ceil(need / holding.replicas))
        if k >= n:
            continue
        cost = facts.run_rate(holding)
        saving = capped(cost * (Decimal(str(n)) - k) / Decimal(str(n)), cost)
        label = f"p{config.percentile:g}"
        replica = " per replica" if holding.replicas > 1 else ""
        headroom = f" plus {config.headroom_gpus} of headroom" if config.headroom_gpus else ""
        patch = gpu_resources_patch(holding, {"nvidia.com/gpu": k})
        comments = []
        if holding.kind in ("Job", "CronJob"):
            comments.append("a Job's pod template cannot change in place: apply this to the "
                            "manifest it is created from, for its next run")  # fmt: skip
        out.append(Finding(
            id=finding_id("overprovisioned-gpus", scope_of(holding)),
            rule="overprovisioned-gpus",
            severity=severity_of(saving),
            scope=scope_of(holding),
            evidence={
                "percentile": config.percentile, "peak_busy_gpus": r4(peak),
                "max_peak_busy_gpus": max(peaks), "headroom_gpus": config.headroom_gpus,
                "gpus_requested": n, "gpus_needed": k, "replicas": holding.replicas,
                "held_hours": round(holding.held_hours, 4),
                "mean_busy_share": r4(mean_busy_share(holding)),
                "gpu_model": holding.gpu_model, **window(facts),
            },
            monthly_saving=saving,
            confidence=confidence(holding.held_hours),
            action=(f"{holding.workload} ({holding.kind}) requests {gpus_text(n)}{replica} but "
                    f"at most {math.ceil(peak - 1e-9)} were busy at once ({label} of its hourly "
                    f"peaks over {hours_text(holding.held_hours)}){headroom}: request "
                    f"{k}{replica}"),
            patch=to_yaml(patch, comments=comments) if patch else None,
        ))  # fmt: skip
    return out
