"""`commitments`: reserved instances, savings plans and committed use sized to the hourly
demand that never goes away.

Per (provider, region, instance type) of on-demand holdings:
  1. The offer: the catalog row of that type in that region with an on-demand price and a
     1- or 3-year effective hourly price (else the region-less row); none -> no finding.
  2. Hourly demand in instances, hour by hour over the whole window (an hour nobody held
     counts as 0): the holdings' `held_gpus` summed per hour / the offer's GPUs.
  3. Fewer than `min_days` days of window -> no finding: a one- or three-year commitment
     on under a month of history is a guess, and a low-confidence guess is still a
     purchase someone might make.
  4. baseline = the `percentile`-th percentile of the demand; committed = floor(baseline);
     0 -> no finding.
  5. Per term with a price R (on-demand O): each hour the commitment pays c x R and saves
     min(demand, c) x O, so
         saving/month = (sum_h min(d_h, c) x O - n x c x R) / n x MONTH_HOURS
                      = c x (O - R) x MONTH_HOURS - unused instance-hours/month x O;
     coverage = sum_h min(d_h, c) / sum_h d_h (the share of demand it covers),
     utilisation = sum_h min(d_h, c) / (n x c), break-even utilisation = R / O (it pays
     when utilisation is above it). It never exceeds the on-demand run-rate of the demand.
  6. Falling demand: the mean of the last 7 days below the first 7 days' by more than
     `falling_threshold` -> said in the evidence, confidence 0.5 instead of 0.8, and the
     action prefers the shorter term.
  7. One finding per instance type, both terms in the evidence; the finding's term and
     saving are the larger saving's (the 1-year's when demand is falling: a falling
     baseline strands a 3-year commitment); nothing saved -> no finding."""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal

from pydantic import Field

from aifinops.core.pricing import type_key
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
from aifinops.core.recommend.pricing_common import HOUR_MS, dec, find_offer, region_label

WEEK_HOURS = 168
_TERMS = (("1y", "reserved_1y"), ("3y", "reserved_3y"))
# What each provider calls a commitment, for the action's words.
_NAMES = {"aws": "Reserved Instances or an EC2 Instance Savings Plan",
          "gcp": "a committed use discount", "azure": "a reservation"}  # fmt: skip


class CommitmentsConfig(RuleConfig):
    percentile: float = Field(default=10, ge=0, le=50)
    min_days: float = Field(default=30, gt=0)
    falling_threshold: float = Field(default=0.1, ge=0, le=1)


def hourly_demand(holdings: list[GpuHolding], facts: Facts, gpus_per_instance: int) -> list[float]:
    """Instances held in each hour of the window [start, end), 0 where nobody held any."""
    n = math.ceil(facts.hours)
    gpus = [0.0] * n
    for h in holdings:
        for use in h.hours:
            i = (use.start_ms - facts.start_ms) // HOUR_MS
            if 0 <= i < n:
                gpus[i] += use.held_gpus
    return [g / gpus_per_instance for g in gpus]


def _has_commitment_price(o: Offer) -> bool:
    return bool(o.on_demand and o.gpus > 0 and (o.reserved_1y or o.reserved_3y))


@rule("commitments", CommitmentsConfig)
def commitments(facts: Facts, cfg: CommitmentsConfig, now_ms: int) -> list[Finding]:
    pools: dict[tuple[str, str, str], list[GpuHolding]] = defaultdict(list)
    for h in facts.holdings:
        if h.capacity == "on-demand" and h.provider and h.region and h.instance_type:
            pools[(h.provider, h.region, type_key(h.instance_type))].append(h)
    out = []
    for (provider, region, _), holdings in sorted(pools.items()):
        instance_type = holdings[0].instance_type or ""
        offer = find_offer(facts.offers, provider, region, instance_type, _has_commitment_price)
        if offer is None or offer.on_demand is None or facts.hours / 24 < cfg.min_days:
            continue
        finding = _pool_finding(facts, cfg, provider, region, instance_type, holdings, offer)
        if finding is not None:
            out.append(finding)
    return out


def _pool_finding(facts: Facts, cfg: CommitmentsConfig, provider: str, region: str,
                  instance_type: str, holdings: list[GpuHolding],
                  offer: Offer) -> Finding | None:  # fmt: skip
    assert offer.on_demand is not None
    demand = hourly_demand(holdings, facts, offer.gpus)
    n = len(demand)
    baseline = percentile(demand, cfg.percentile)
    committed = math.floor(baseline + 1e-9)  # 2.9999999 from float sums is 3
    total = sum(demand)
    if committed < 1 or total <= 0:
        return None
    covered = sum(min(d, committed) for d in demand)
    coverage = covered / total
    utilisation = covered / (n * committed)
    on_demand = offer.on_demand
    run_rate = dec(total) / n * on_demand * MONTH_HOURS
    options: list[tuple[Decimal, str, dict[str, object]]] = []
    unused_month = dec(n * committed - covered) / n * MONTH_HOURS
    for term, field in _TERMS:
        reserved: Decimal | None = getattr(offer, field)
        if reserved is None:
            continue
        saving = committed * (on_demand - reserved) * MONTH_HOURS - unused_month * on_demand
        saving = min(run_rate, saving)
        options.append((saving, term, {
            "term": term, "reserved_hourly": str(reserved), "committed": committed,
            "break_even_utilisation": float(round(reserved / on_demand, 6)),
            "monthly_saving": str(saving),
        }))  # fmt: skip
    first = sum(demand[:WEEK_HOURS]) / min(n, WEEK_HOURS)
    last = sum(demand[-WEEK_HOURS:]) / min(n, WEEK_HOURS)
    falling = first > 0 and (first - last) / first > cfg.falling_threshold
    short = [o for o in options if o[1] == "1y"]
    saving, term, _ = short[0] if falling and short else max(options, key=lambda o: o[0])
    if saving <= 0:
        return None
    scope = {"provider": provider, "region": region, "instance_type": instance_type}
    words = _NAMES.get(provider, "a commitment")
    risk = (f" Demand fell {100 * (first - last) / first:.0f} % from the first week to the "
            "last: prefer the 1-year term, or commit fewer." if falling else "")  # fmt: skip
    return Finding(
        id=finding_id("commitments", scope), rule="commitments",
        severity=severity_of(saving), scope=scope,
        evidence={
            "window": {"start_ms": facts.start_ms, "end_ms": facts.end_ms, "hours": n},
            "percentile": cfg.percentile, "baseline": round(baseline, 6),
            "committed": committed, "gpus_per_instance": offer.gpus,
            "mean_demand": round(total / n, 6), "peak_demand": round(max(demand), 6),
            "coverage": round(coverage, 6), "utilisation": round(utilisation, 6),
            "on_demand_hourly": str(on_demand), "price_region": region_label(offer),
            "monthly_on_demand_run_rate": str(run_rate), "options": [o for _, _, o in options],
            "first_week_mean": round(first, 6), "last_week_mean": round(last, 6),
            "falling": falling, "workloads": len({h.workload for h in holdings}), "term": term,
        },
        monthly_saving=saving,
        confidence=Decimal("0.5") if falling else Decimal("0.8"),
        action=(f"Commit to {committed} x {instance_type} in {provider} {region} for {term} "
                f"({words}): it covers {100 * coverage:.1f} % of the demand and would be used "
                f"{100 * utilisation:.1f} % of its hours.{risk}"),
    )  # fmt: skip
