"""`cheaper-offer`: batch work that would cost less on the same GPU elsewhere (another
provider, or another region of its own), one finding per team's work in one place.

  1. Movable holdings: a kind in `movable_kinds` (Jobs, CronJobs), asking for GPUs, on a
     node of a known provider and not on-prem (owned GPUs: moving frees nothing; a node of
     no provider, like the demo's DGX priced per GPU-hour, is one we cannot say is rented).
  2. Grouped by team, namespace, kind and where they run (provider, region, GPU model).
     A holding is already a controller (store/recommend.py, step 3), but a Job is one run:
     a team's training is many Jobs (a CronJob's one per schedule, a pipeline's one per
     step, the demo's 272), each a controller of its own, and a run that has ended is
     never moved — the next ones are. What moves is the team's work in that place, with
     its data, images and quotas; a finding per run would be a long list of small
     findings whose ids never recur (a dismissal would not stick). The group's scope
     names no workload, so its id stays the same as runs come and go.
  3. The cheapest on-demand offer per GPU-hour of the same GPU (`same_gpu`: family, and
     memory where both name it) in another provider, or a named other region of its
     provider (a region-less row of its own provider may be its own region: left out),
     among `providers` where given. It depends only on where the group runs: one offer
     for all its members.
  4. Per member held in the window: ours = cost per hour held / (GPUs x replicas); when
     the offer is at least `min_discount` below it (moving data and images costs
     something too), its saving = (ours - the offer's) x GPUs x MONTH_HOURS x the share of
     the window it held them (= its run-rate x the discount, never above its run-rate), to
     the cent. A member the offer is not cheap enough for is left out of the group.
  5. The group's saving = the sum of its members' savings: a month of their run-rates,
     never the look-back total. The minimum saving (`min_monthly_saving`, applied by
     `run_rules`) is the group's: runs too small to list alone still count in their
     group. Its cost per GPU-hour in the evidence is its members' cost per hour held x
     share over their GPUs x share; the discount is against that."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from pydantic import Field

from aifinops.core.pricing import same_gpu
from aifinops.core.recommend.base import (
    CENT,
    MONTH_HOURS,
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
    dec,
    held_share,
    monthly_run_rate,
    region_label,
    to_yaml,
)
from aifinops.core.recommend.pricing_spot import pod_spec_patch

NAMED = 10  # members named in a finding's evidence (the largest savings); all are counted
PER_GPU_HOUR = Decimal("0.000001")  # prices per GPU-hour in the evidence


class CheaperOfferConfig(RuleConfig):
    movable_kinds: list[str] = Field(default_factory=lambda: ["Job", "CronJob"])
    min_discount: Decimal = Field(default=Decimal("0.1"), ge=0, lt=1)
    providers: list[str] | None = None  # where work may move to; None: any in the catalog


@dataclass(frozen=True)
class _Member:
    """One holding of a group, and what moving it saves."""

    holding: GpuHolding
    gpus: Decimal  # GPUs x replicas
    share: Decimal  # of the window it held them
    ours: Decimal  # its cost per GPU-hour
    run_rate: Decimal
    saving: Decimal  # to the cent


def _placement(h: GpuHolding) -> tuple[str, str, str, str, str, str]:
    """Whose work, of what kind, where (step 2)."""
    return (h.team, h.namespace, h.kind, h.provider or "", h.region or "", h.gpu_model)


def _elsewhere(h: GpuHolding, o: Offer) -> bool:
    """Another provider, or a named other region of its own."""
    if o.provider != h.provider:
        return True
    return bool(o.region and h.region and o.region != h.region)


def _per_gpu_hour(o: Offer) -> Decimal:
    assert o.on_demand is not None  # filtered before
    return o.on_demand / o.gpus


def _cheapest(h: GpuHolding, offers: Sequence[Offer], cfg: CheaperOfferConfig) -> Offer | None:
    """Step 3: the cheapest offer per GPU-hour of its GPU elsewhere (ties: by provider,
    region, instance type)."""
    found = [o for o in offers
             if o.on_demand and o.gpus > 0 and same_gpu(o.gpu_model, h.gpu_model)
             and _elsewhere(h, o)
             and (cfg.providers is None or o.provider in cfg.providers)]  # fmt: skip
    if not found:
        return None
    return min(found, key=lambda o: (_per_gpu_hour(o), o.provider, o.region,
                                     o.instance_type or ""))  # fmt: skip


def _member(
    h: GpuHolding, theirs: Decimal, facts: Facts, cfg: CheaperOfferConfig
) -> _Member | None:
    """Step 4: what moving one holding saves, or None when the offer is not cheap enough."""
    gpus = dec(h.gpus * h.replicas)
    ours = h.cost_per_hour / gpus
    share = held_share(h, facts)
    if ours <= 0 or share <= 0 or 1 - theirs / ours < cfg.min_discount:
        return None  # not held in the window, or the offer not cheap enough
    run_rate = monthly_run_rate(h, facts)
    saving = min(run_rate, (ours - theirs) * gpus * MONTH_HOURS * share)
    return _Member(h, gpus, share, ours, run_rate, saving.quantize(CENT, ROUND_HALF_UP))


@rule("cheaper-offer", CheaperOfferConfig)
def cheaper_offer(facts: Facts, cfg: CheaperOfferConfig, now_ms: int) -> list[Finding]:
    groups: dict[tuple[str, ...], list[GpuHolding]] = {}
    for h in facts.holdings:  # steps 1-2
        rented = bool(h.provider) and h.capacity != "on-prem"
        if h.kind in cfg.movable_kinds and rented and h.gpus * h.replicas > 0:
            groups.setdefault(_placement(h), []).append(h)
    out = []
    for key in sorted(groups):
        held = groups[key]
        best = _cheapest(held[0], facts.offers, cfg)
        if best is None:
            continue
        theirs = _per_gpu_hour(best)
        members = [m for h in held if (m := _member(h, theirs, facts, cfg)) is not None]
        if members:
            out.append(_finding(key, members, best, theirs, facts))
    return out


def _finding(
    key: tuple[str, ...], members: list[_Member], best: Offer, theirs: Decimal, facts: Facts
) -> Finding:
    """Step 5: one group's finding."""
    team, namespace, kind, provider, region, gpu_model = key
    members.sort(key=lambda m: (-m.saving, m.holding.workload))
    saving = sum((m.saving for m in members), Decimal(0))
    gpu_share = sum((m.gpus * m.share for m in members), Decimal(0))
    ours = sum((m.holding.cost_per_hour * m.share for m in members), Decimal(0)) / gpu_share
    scope = {"team": team, "namespace": namespace, "kind": kind, "provider": provider,
             "region": region, "gpu_model": gpu_model}  # fmt: skip
    where = f"{best.provider} {region_label(best)} ({best.instance_type or best.gpu_model})"
    if len(members) == 1:
        what = members[0].holding.workload
    else:
        names = ", ".join(m.holding.workload.rsplit("/", 1)[-1] for m in members[:3])
        more = f" and {len(members) - 3} more" if len(members) > 3 else ""
        what = (f"the {len(members)} {kind}s of {namespace} on {gpu_model} in {provider} "
                f"{region or 'its region'} ({names}{more})")  # fmt: skip
    return Finding(
        id=finding_id("cheaper-offer", scope), rule="cheaper-offer",
        severity=severity_of(saving), scope=scope,
        evidence={
            "kind": kind, "gpu_model": gpu_model, "provider": provider or None,
            "region": region or None, "workloads": len(members),
            "mean_gpus_held": float(gpu_share),
            "cost_per_gpu_hour": str(ours.quantize(PER_GPU_HOUR, ROUND_HALF_UP)),
            "offer_per_gpu_hour": str(theirs),
            "discount": float(round(1 - theirs / ours, 4)),
            "offer": {"provider": best.provider, "region": region_label(best),
                      "instance_type": best.instance_type, "gpus": best.gpus,
                      "on_demand_hourly": str(best.on_demand)},
            "monthly_run_rate": str(sum((m.run_rate for m in members), Decimal(0))),
            "members": [
                {"workload": m.holding.workload, "gpus": float(m.gpus),
                 "held_share": float(m.share),
                 "cost_per_gpu_hour": str(m.ours.quantize(PER_GPU_HOUR, ROUND_HALF_UP)),
                 "monthly_run_rate": str(m.run_rate), "monthly_saving": str(m.saving)}
                for m in members[:NAMED]
            ],
            "window": {"start_ms": facts.start_ms, "end_ms": facts.end_ms},
        },
        monthly_saving=saving,
        confidence=Decimal("0.5") if best.region else Decimal("0.4"),
        action=(f"Run {what} in {where}: {theirs:.4f}/GPU-hour on demand vs {ours:.4f} now. "
                "Moving data, images and quotas costs something too."),
        patch=_offer_patch(kind, namespace, members, best),
    )  # fmt: skip


def _offer_patch(kind: str, namespace: str, members: list[_Member], o: Offer) -> str | None:
    selector: dict[str, YamlValue] = {}
    if o.instance_type:
        selector["node.kubernetes.io/instance-type"] = o.instance_type
    if o.region:
        selector["topology.kubernetes.io/region"] = o.region
    if not selector:
        return None
    names = [m.holding.workload.rsplit("/", 1)[-1] for m in members]
    listed = ", ".join(names[:NAMED]) + (f" and {len(names) - NAMED} more" if len(names) > NAMED
                                         else "")  # fmt: skip
    head = (f"# in a {o.provider} cluster in {region_label(o)}: the pod template of {kind} "
            f"{listed} (namespace {namespace})\n")  # fmt: skip
    return head + to_yaml(pod_spec_patch(kind, {"nodeSelector": selector})) + "\n"
