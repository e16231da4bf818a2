"""`unattributed-spend`: spend no team carries (allocation rows in `__unallocated__`,
untagged bill lines), when it is more than `max_share` of all spend.

  1. share = the lines' cost / the facts' total spend in the window (no total -> nothing).
  2. Above `max_share`: one finding with the share, the `top` largest lines (their keys and
     costs) and the label to add (`metadata.labels.<label>: <owner>`).
  3. It saves nothing by itself (monthly_saving 0; this rule's `min_monthly_saving` is 0 so
     that `run_rules` keeps it); its severity goes by the share instead: high from 25 %,
     medium from 10 %, low above `max_share`. Confidence 1: the share is measured, not
     estimated."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from aifinops.core.recommend.base import (
    Facts,
    Finding,
    RuleConfig,
    Severity,
    SpendLine,
    finding_id,
    rule,
)
from aifinops.core.recommend.pricing_common import YamlValue, to_yaml

SCOPE = {"team": "__unallocated__"}


class UnattributedConfig(RuleConfig):
    min_monthly_saving: Decimal = Field(default=Decimal(0), ge=0)
    max_share: Decimal = Field(default=Decimal("0.05"), ge=0, le=1)
    label: str = Field(default="team", min_length=1)
    top: int = Field(default=5, ge=1)
    high_share: Decimal = Field(default=Decimal("0.25"), gt=0, le=1)
    medium_share: Decimal = Field(default=Decimal("0.10"), gt=0, le=1)


def severity_of_share(share: Decimal, cfg: UnattributedConfig) -> Severity:
    if share >= cfg.high_share:
        return "high"
    return "medium" if share >= cfg.medium_share else "low"


@rule("unattributed-spend", UnattributedConfig)
def unattributed_spend(facts: Facts, cfg: UnattributedConfig, now_ms: int) -> list[Finding]:
    total = sum((line.cost for line in facts.spend), Decimal(0))
    if facts.total_spend <= 0 or total <= 0:
        return []
    share = total / facts.total_spend
    if share <= cfg.max_share:
        return []
    top = sorted(facts.spend, key=lambda line: (-line.cost, sorted(line.key.items())))[: cfg.top]
    offenders = [{"key": dict(line.key), "source": line.source, "cost": str(line.cost)}
                 for line in top]  # fmt: skip
    return [Finding(
        id=finding_id("unattributed-spend", SCOPE), rule="unattributed-spend",
        severity=severity_of_share(share, cfg), scope=SCOPE,
        evidence={
            "unattributed_cost": str(total), "total_spend": str(facts.total_spend),
            "share": float(round(share, 6)), "max_share": float(cfg.max_share),
            "lines": len(facts.spend), "offenders": offenders, "label": cfg.label,
            "currency": facts.currency,
            "window": {"start_ms": facts.start_ms, "end_ms": facts.end_ms},
        },
        monthly_saving=Decimal(0), confidence=Decimal(1),
        action=(f"{100 * share:.1f} % of spend ({total:.2f} {facts.currency}) carries no "
                f"team: label the largest ({_name(top[0])} first) with `{cfg.label}`, and tag "
                f"cloud resources with it too."),
        patch=_patch(top, cfg.label),
    )]  # fmt: skip


def _name(line: SpendLine) -> str:
    key = line.key
    named = key.get("workload") or key.get("resource")
    return named or "/".join(v for _, v in sorted(key.items())) or "(no key)"


def _patch(top: list[SpendLine], label: str) -> str:
    patch: dict[str, YamlValue] = {"metadata": {"labels": {label: "<owner>"}}}
    how = []
    for line in top:
        ns, workload = line.key.get("namespace"), line.key.get("workload")
        if line.source == "allocation" and ns and workload:
            name = workload.rsplit("/", 1)[-1]
            how.append(f"# kubectl -n {ns} label pod {name} {label}=<owner>  (or its controller)")
        elif line.source == "allocation" and ns:
            how.append(f"# kubectl label namespace {ns} {label}=<owner>")
        else:
            how.append(f"# tag {_name(line)} with {label}=<owner> in the cloud account")
    return "\n".join(how) + "\n" + to_yaml(patch) + "\n"
