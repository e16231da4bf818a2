"""`rightsize-gpu`: a one-GPU workload that fits a MIG instance of its GPU, or else a
cheaper GPU model in the same provider and region; with the MIG profile table it uses."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pydantic import Field

from aifinops.core.recommend.base import (
    MONTH_HOURS,
    Facts,
    Finding,
    GpuHolding,
    Offer,
    RuleConfig,
    finding_id,
    percentile,
    rule,
    severity_of,
)
from aifinops.core.recommend.usage_common import (
    busy_shares,
    capped,
    confidence,
    gib,
    gpu_resources_patch,
    memory_values,
    pct,
    pod_spec_patch,
    r4,
    scope_of,
    to_yaml,
    window,
)

# A MIG saving is realised only when other work takes the freed slices; a cheaper GPU model
# may run the workload slower than the one it measured on.
MIG_FACTOR = 0.7
OFFER_FACTOR = 0.6


@dataclass(frozen=True)
class MigProfile:
    name: str  # as in `nvidia.com/mig-<name>` and `nvidia-smi mig -lgip`
    slices: int  # compute slices, of the GPU's `compute_slices`
    memory_units: int  # memory slices, of the GPU's `memory_units`
    memory_gib: float  # usable memory as `nvidia-smi mig -lgip` reports it


@dataclass(frozen=True)
class MigGpu:
    compute_slices: int
    memory_units: int
    profiles: tuple[MigProfile, ...]

    def share(self, profile: MigProfile) -> Fraction:
        """The part of the GPU a profile takes: its compute share or its memory share,
        whichever is larger (a 3g.40gb leaves room for one 4g.40gb only: half the GPU)."""
        return max(Fraction(profile.slices, self.compute_slices),
                   Fraction(profile.memory_units, self.memory_units))  # fmt: skip


def _gpu(compute: int, memory: int, *rows: tuple[str, int, int, float]) -> MigGpu:
    return MigGpu(compute, memory, tuple(MigProfile(*row) for row in rows))


# NVIDIA MIG User Guide, "Supported MIG Profiles": the fractions of SMs (compute slices)
# and of memory of each GPU instance profile; the GiB are what `nvidia-smi mig -lgip`
# reports usable for each (a little under the name's GB). The A30 has 4 compute slices.
MIG_GPUS: dict[str, MigGpu] = {
    "A100-40GB": _gpu(7, 8, ("1g.5gb", 1, 1, 4.75), ("1g.10gb", 1, 2, 9.75),
                      ("2g.10gb", 2, 2, 9.75), ("3g.20gb", 3, 4, 19.62),
                      ("4g.20gb", 4, 4, 19.62), ("7g.40gb", 7, 8, 39.50)),
    "A100-80GB": _gpu(7, 8, ("1g.10gb", 1, 1, 9.50), ("1g.20gb", 1, 2, 19.50),
                      ("2g.20gb", 2, 2, 19.50), ("3g.40gb", 3, 4, 39.25),
                      ("4g.40gb", 4, 4, 39.25), ("7g.80gb", 7, 8, 79.00)),
    "H100-80GB": _gpu(7, 8, ("1g.10gb", 1, 1, 9.75), ("1g.20gb", 1, 2, 19.62),
                      ("2g.20gb", 2, 2, 19.62), ("3g.40gb", 3, 4, 39.50),
                      ("4g.40gb", 4, 4, 39.50), ("7g.80gb", 7, 8, 79.25)),
    "A30": _gpu(4, 4, ("1g.6gb", 1, 1, 5.81), ("2g.12gb", 2, 2, 11.69),
                ("4g.24gb", 4, 4, 23.44)),
}  # fmt: skip


def mig_gpu(model: str, memory_mib: float) -> tuple[str, MigGpu] | None:
    """The MIG table of a GPU model name (as nvidia-smi, GPU Feature Discovery or a catalog
    writes it), or None: not MIG-capable, not in the table (H100 NVL, H200), or already a
    MIG instance."""
    name = model.upper()
    if "MIG" in name:
        return None
    if re.search(r"\bA30\b", name):
        return "A30", MIG_GPUS["A30"]
    if re.search(r"\bA100\b", name):
        big = "80GB" in name.replace(" ", "") or memory_mib > 48 * 1024
        key = "A100-80GB" if big else "A100-40GB"
        return key, MIG_GPUS[key]
    if re.search(r"\bH100\b", name) and "NVL" not in name and memory_mib <= 82 * 1024:
        return "H100-80GB", MIG_GPUS["H100-80GB"]
    return None


def smallest_fit(gpu: MigGpu, memory_mib: float, busy_share: float) -> MigProfile | None:
    """The profile taking the least of the GPU whose memory holds `memory_mib` and whose
    slices give `busy_share` of the whole GPU's time (a k-slice instance runs a kernel
    about k/compute_slices as fast, so the workload needs compute_slices x share of them);
    None when only the whole GPU fits."""
    slices = max(1, math.ceil(busy_share * gpu.compute_slices - 1e-9))
    fits = [
        p
        for p in gpu.profiles
        if p.memory_gib * 1024 >= memory_mib and p.slices >= slices and gpu.share(p) < 1
    ]
    return min(fits, key=lambda p: (gpu.share(p), p.slices, p.memory_gib), default=None)


class RightsizeGpuConfig(RuleConfig):
    percentile: float = Field(default=95, ge=0, le=100)
    memory_headroom: float = Field(default=0.2, ge=0)  # above the measured memory
    busy_headroom: float = Field(default=0.2, ge=0)  # above the measured busy share


@rule("rightsize-gpu", RightsizeGpuConfig)
def rightsize_gpu(facts: Facts, config: RightsizeGpuConfig, now_ms: int) -> list[Finding]:
    """For a workload of one GPU per replica:

    1. its need: the chosen percentile of its hourly peak memory x (1 + memory_headroom),
       and of its hourly busy share x (1 + busy_headroom);
    2. a MIG instance of its own GPU that holds that need (`smallest_fit`); the saving is
       the part of the GPU's cost it frees, 1 - share, realised when other work takes the
       freed slices (confidence x 0.7);
    3. else, on on-demand capacity, the cheapest catalog offer of another GPU model in the
       same provider and region whose per-GPU memory holds the need and whose price per GPU
       (instance price / GPUs) is under what it costs per GPU-hour now: saving = (cost per
       GPU-hour - offer's) x GPUs x 730 (confidence x 0.6: the other GPU may be slower)."""
    out: list[Finding] = []
    for holding in facts.holdings:
        known = memory_values(holding)
        if holding.gpus != 1 or not known:
            continue  # a fit needs its memory measured
        memory = percentile(known, config.percentile)
        busy = percentile(busy_shares(holding), config.percentile)
        need = {"memory": memory * (1 + config.memory_headroom),
                "busy": busy * (1 + config.busy_headroom)}  # fmt: skip
        evidence: dict[str, Any] = {
            "percentile": config.percentile, "memory_mib": round(memory, 1),
            "memory_need_mib": round(need["memory"], 1), "busy_share": r4(busy),
            "busy_need_share": r4(need["busy"]), "held_hours": round(holding.held_hours, 4),
            "gpu_model": holding.gpu_model, **window(facts),
        }  # fmt: skip
        found = _mig_finding(facts, holding, need, evidence, config.percentile)
        if found is None and need["busy"] <= 1:
            found = _offer_finding(facts, holding, need, evidence, facts.offers, config.percentile)
        if found is not None:
            out.append(found)
    return out


def _finding(holding: GpuHolding, saving: Decimal, evidence: dict[str, Any], factor: float,
             action: str, patch: str | None) -> Finding:  # fmt: skip
    return Finding(
        id=finding_id("rightsize-gpu", scope_of(holding)), rule="rightsize-gpu",
        severity=severity_of(saving), scope=scope_of(holding), evidence=evidence,
        monthly_saving=saving, confidence=confidence(holding.held_hours, factor),
        action=action, patch=patch,
    )  # fmt: skip


def _mig_finding(
    facts: Facts, holding: GpuHolding, need: dict[str, float], evidence: dict[str, Any], q: float
) -> Finding | None:
    table = mig_gpu(holding.gpu_model, holding.gpu_memory_mib)
    if table is None:
        return None
    family, gpu = table
    profile = smallest_fit(gpu, need["memory"], need["busy"])
    if profile is None:
        return None
    share = gpu.share(profile)
    cost = facts.run_rate(holding)
    saving = capped(cost * Decimal(share.denominator - share.numerator) / share.denominator, cost)
    evidence = evidence | {
        "mig_gpu": family, "mig_profile": profile.name, "profile_slices": profile.slices,
        "compute_slices": gpu.compute_slices, "profile_memory_gib": profile.memory_gib,
        "gpu_share": str(share), "saving_share": str(1 - share),
        "realised_when": "other work uses the freed slices",
    }  # fmt: skip
    resource = f"nvidia.com/mig-{profile.name}"
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": holding.node,
                         "labels": {"nvidia.com/mig.config": f"all-{profile.name}"}}}  # fmt: skip
    workload = gpu_resources_patch(holding, {"nvidia.com/gpu": None, resource: 1})
    comments = [
        f"1. MIG Manager (GPU Operator) splits the node's GPUs into {profile.name} instances "
        f"(its config all-{profile.name}); move whole-GPU work off the node first",
        f"2. the workload asks for one {resource} instead of a whole GPU (mig.strategy "
        "mixed)" + ("" if workload else f": recreate {holding.kind} {holding.workload} so"),
    ]  # fmt: skip
    docs = [node, workload] if workload else [node]
    action = (
        f"{holding.workload} ({holding.kind}) needs {gib(need['memory'])} of GPU memory and "
        f"{pct(need['busy'])} of a GPU's time (p{q:g} with headroom; measured "
        f"{gib(evidence['memory_mib'])}, {pct(evidence['busy_share'])} busy): run it on a MIG "
        f"{profile.name} instance ({profile.memory_gib} GiB, {profile.slices} of "
        f"{gpu.compute_slices} compute slices) of its {holding.gpu_model}. It takes {share} of "
        f"the GPU; the other {1 - share} is saved once other work uses the freed slices"
    )
    return _finding(holding, saving, evidence, MIG_FACTOR, action,
                    to_yaml(*docs, comments=comments))  # fmt: skip


def _offer_finding(
    facts: Facts,
    holding: GpuHolding,
    need: dict[str, float],
    evidence: dict[str, Any],
    offers: tuple[Offer, ...],
    q: float,
) -> Finding | None:
    if holding.capacity != "on-demand" or not holding.provider or not holding.region:
        return None
    gpus = Decimal(str(holding.gpus * holding.replicas))
    now = holding.cost_per_hour / gpus
    priced = [
        (o.on_demand / o.gpus, o) for o in offers
        if o.provider == holding.provider and o.region == holding.region
        and o.gpu_model != holding.gpu_model and o.on_demand is not None and o.gpus > 0
        and o.gpu_memory_mib >= need["memory"] and o.on_demand / o.gpus < now
    ]  # fmt: skip
    if not priced:
        return None
    price, offer = min(priced, key=lambda p: (p[0], -p[1].gpu_memory_mib, p[1].instance_type or ""))
    cost = facts.run_rate(holding)
    saving = capped((now - price) * gpus * MONTH_HOURS, cost)
    evidence = evidence | {
        "offer_provider": offer.provider, "offer_region": offer.region,
        "offer_instance_type": offer.instance_type, "offer_gpu_model": offer.gpu_model,
        "offer_gpu_memory_mib": offer.gpu_memory_mib,
        "offer_price_per_gpu_hour": str(price.quantize(Decimal("0.0001"))),
        "cost_per_gpu_hour": str(now.quantize(Decimal("0.0001"))),
    }  # fmt: skip
    selector = ({"node.kubernetes.io/instance-type": offer.instance_type} if offer.instance_type
                else {"nvidia.com/gpu.product": offer.gpu_model.replace(" ", "-")})  # fmt: skip
    patch = pod_spec_patch(holding, {"nodeSelector": selector})
    action = (
        f"{holding.workload} ({holding.kind}) needs {gib(need['memory'])} of GPU memory (p{q:g} "
        f"with headroom): move it from {holding.gpu_model} at {now:.2f}/GPU-hour to "
        f"{offer.gpu_model} ({offer.instance_type or 'any instance'}, {offer.provider} "
        f"{offer.region}) at {price:.2f}/GPU-hour; check it keeps up, it was "
        f"{pct(evidence['busy_share'])} busy on the GPU it has"
    )
    return _finding(holding, saving, evidence, OFFER_FACTOR, action,
                    to_yaml(patch) if patch else None)  # fmt: skip
