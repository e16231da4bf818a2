"""`spot-candidate`: a workload that pays on-demand prices for work that tolerates being
interrupted, where the catalog says the same instance costs less on spot capacity.

Per on-demand holding:
  1. It tolerates interruption for one of the reasons in `_REASONS`, tried in order (a Job
     that checkpoints, replicated serving, an interruptible namespace); never a kind in
     `never_kinds` (StatefulSets, Notebooks: state lost on reclaim), whatever its namespace.
  2. The catalog offer of its instance type in its provider and region with a spot price
     (else the provider's region-less offer); none -> no finding.
  3. discount = (on_demand - spot) / on_demand of that one offer; saving = discount x its
     monthly run-rate (it pays on-demand now), so never above the run-rate.

`pod_spec_patch` (a patch of a workload's pod template) is shared with `cheaper-offer`
(pricing_offer)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from pydantic import Field

from aifinops.core.recommend.base import (
    Facts,
    Finding,
    GpuHolding,
    Offer,
    RuleConfig,
    finding_id,
    rule,
    severity_of,
)
from aifinops.core.recommend.pricing_common import (
    YamlValue,
    find_offer,
    held_share,
    monthly_run_rate,
    region_label,
    to_yaml,
    workload_name,
    workload_scope,
)


class SpotConfig(RuleConfig):
    interruptible_namespaces: list[str] = Field(
        default_factory=lambda: ["dev", "batch", "ci", "research-dev"]
    )
    min_replicas: int = Field(default=2, ge=2)
    checkpoint_kinds: list[str] = Field(default_factory=lambda: ["Job", "CronJob"])
    replicated_kinds: list[str] = Field(default_factory=lambda: ["Deployment"])
    never_kinds: list[str] = Field(default_factory=lambda: ["StatefulSet", "Notebook"])


# Why a holding tolerates interruption, and how sure we are that it does.
_REASONS: tuple[tuple[str, Decimal, Callable[[GpuHolding, SpotConfig], bool]], ...] = (
    ("a job that checkpoints", Decimal("0.8"),
     lambda h, c: h.kind in c.checkpoint_kinds and h.checkpoints),
    ("replicated stateless serving", Decimal("0.7"),
     lambda h, c: h.kind in c.replicated_kinds and h.replicas >= c.min_replicas),
    ("in an interruptible namespace", Decimal("0.7"),
     lambda h, c: h.namespace in c.interruptible_namespaces),
)  # fmt: skip

# Where a provider's Kubernetes puts spot nodes: the node selector and the taint to tolerate.
_SPOT_PLACEMENT: dict[str, tuple[dict[str, YamlValue], list[YamlValue]]] = {
    "aws": ({"karpenter.sh/capacity-type": "spot"}, []),
    "gcp": (
        {"cloud.google.com/gke-spot": "true"},
        [{"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
          "effect": "NoSchedule"}],
    ),
    "azure": (
        {"kubernetes.azure.com/scalesetpriority": "spot"},
        [{"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
          "value": "spot", "effect": "NoSchedule"}],
    ),
}  # fmt: skip

_POD_SPEC_PATH: dict[str, tuple[str, ...]] = {"CronJob": ("spec", "jobTemplate", "spec")}


def pod_spec_patch(kind: str, pod_spec: dict[str, YamlValue]) -> dict[str, YamlValue]:
    """A strategic-merge patch that sets fields of a workload's pod template."""
    patch: dict[str, YamlValue] = {"template": {"spec": pod_spec}}
    for key in reversed(_POD_SPEC_PATH.get(kind, ("spec",))):
        patch = {key: patch}
    return patch


def _has_spot(o: Offer) -> bool:
    return bool(o.on_demand and o.spot and o.spot < o.on_demand)


def _spot_reason(h: GpuHolding, cfg: SpotConfig) -> tuple[str, Decimal] | None:
    if h.kind in cfg.never_kinds:
        return None
    return next(((why, conf) for why, conf, test in _REASONS if test(h, cfg)), None)


@rule("spot-candidate", SpotConfig)
def spot_candidate(facts: Facts, cfg: SpotConfig, now_ms: int) -> list[Finding]:
    out = []
    for h in facts.holdings:
        reason = _spot_reason(h, cfg) if h.capacity == "on-demand" else None
        if reason is None or not (h.provider and h.instance_type):
            continue
        offer = find_offer(facts.offers, h.provider, h.region, h.instance_type, _has_spot)
        if offer is None or offer.on_demand is None or offer.spot is None:
            continue
        why, confidence = reason
        discount = (offer.on_demand - offer.spot) / offer.on_demand
        run_rate = monthly_run_rate(h, facts)
        saving = min(run_rate, run_rate * discount)
        if not offer.region:
            confidence -= Decimal("0.1")  # a list price for any region: spot varies by region
        scope = workload_scope(h)
        pct = f"{discount * 100:.1f}"
        out.append(Finding(
            id=finding_id("spot-candidate", scope), rule="spot-candidate",
            severity=severity_of(saving), scope=scope,
            evidence={
                "reason": why, "kind": h.kind, "replicas": h.replicas,
                "checkpoints": h.checkpoints, "capacity": h.capacity,
                "provider": h.provider, "region": h.region, "price_region": region_label(offer),
                "instance_type": h.instance_type, "on_demand_hourly": str(offer.on_demand),
                "spot_hourly": str(offer.spot), "discount": float(round(discount, 4)),
                "monthly_run_rate": str(run_rate), "held_share": float(held_share(h, facts)),
                "window": {"start_ms": facts.start_ms, "end_ms": facts.end_ms},
            },
            monthly_saving=saving, confidence=confidence,
            action=(f"Run {h.workload} ({why}) on spot capacity: {h.instance_type} costs "
                    f"{offer.spot}/h on spot vs {offer.on_demand}/h on demand ({pct} % off). "
                    "Spot nodes can be reclaimed at short notice: keep a PodDisruptionBudget "
                    "and checkpoints."),
            patch=_spot_patch(h),
        ))  # fmt: skip
    return out


def _spot_patch(h: GpuHolding) -> str | None:
    placement = _SPOT_PLACEMENT.get(h.provider or "")
    if placement is None:
        return None
    selector, tolerations = placement
    pod_spec: dict[str, YamlValue] = {"nodeSelector": selector}
    if tolerations:
        pod_spec["tolerations"] = tolerations
    head = (f"# kubectl -n {h.namespace} patch {h.kind.lower()} {workload_name(h)} "
            "--patch-file spot.yaml\n")  # fmt: skip
    return head + to_yaml(pod_spec_patch(h.kind, pod_spec)) + "\n"
