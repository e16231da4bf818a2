"""What every recommendation rule shares: the facts it reads, the finding it gives, its
config, and the registry it is found in.

The facts are per workload that holds GPUs (`GpuHolding`): what it asked for, what it cost
per hour, and an hourly series of how it used what it held. Prices come as `Offer`s from
the catalog; spend rows (allocation buckets, untagged bill lines) as `SpendLine`s. Rules
are functions `(facts, config, now_ms) -> list[Finding]`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aifinops.errors import ConfigError

MONTH_HOURS = Decimal(730)
CENT = Decimal("0.01")  # 365 x 24 / 12: a month of run-rate
Severity = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class HourUse:
    """One hour of a workload's use of the GPUs it held."""

    start_ms: int
    held_gpus: float  # GPUs held, on average over the hour
    busy_gpus: float  # busy GPU-time in the hour, in GPUs (the sum of busy fractions)
    peak_gpus: int  # the most GPUs busy at once in the hour (busy above 1 %)
    memory_mib: float  # the most GPU memory used on any one of its GPUs in the hour


@dataclass(frozen=True)
class GpuHolding:
    """A workload that held GPUs in the window, and how it used them."""

    workload: str  # namespace/pod (or the controller's name for a replicated workload)
    namespace: str
    team: str
    kind: str  # Deployment, StatefulSet, Job, CronJob, Notebook, Pod, ...
    node: str
    gpu_model: str
    gpu_memory_mib: float  # of one GPU (or MIG instance) it holds
    gpus: float  # GPUs requested (per replica)
    cost_per_hour: Decimal  # what it cost per hour held (its allocation / its held hours)
    hours: tuple[HourUse, ...]
    replicas: int = 1
    provider: str | None = None
    region: str | None = None
    instance_type: str | None = None
    capacity: str = "on-demand"  # on-demand, spot, reserved, on-prem
    serving: bool = False  # a model server (its counters were seen)
    checkpoints: bool = False  # a training job that saves checkpoints (label or kind)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def held_hours(self) -> float:
        return sum(min(1.0, h.held_gpus / self.gpus) if self.gpus else 0.0 for h in self.hours)

    def monthly_cost(self) -> Decimal:
        """Its cost for a month held throughout (an upper bound; savings use
        `Facts.run_rate`, which counts only the hours it held)."""
        return self.cost_per_hour * MONTH_HOURS


@dataclass(frozen=True)
class Offer:
    """One catalog price: an instance type (or a GPU alone) in a provider's region."""

    provider: str
    region: str
    gpu_model: str
    gpus: int
    gpu_memory_mib: float
    instance_type: str | None = None
    on_demand: Decimal | None = None  # per hour, the whole instance
    spot: Decimal | None = None
    reserved_1y: Decimal | None = None  # effective per hour, no upfront
    reserved_3y: Decimal | None = None


@dataclass(frozen=True)
class SpendLine:
    """Spend no team carries: an allocation bucket's row or an untagged bill line."""

    key: Mapping[str, str]  # namespace, workload, node (allocation) or resource (bill)
    cost: Decimal
    source: Literal["allocation", "bill"] = "allocation"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    start_ms: int
    end_ms: int
    holdings: tuple[GpuHolding, ...] = ()
    offers: tuple[Offer, ...] = ()
    spend: tuple[SpendLine, ...] = ()
    total_spend: Decimal = Decimal(0)  # all spend in the window (for shares)
    currency: str = "USD"

    @property
    def hours(self) -> float:
        return (self.end_ms - self.start_ms) / 3_600_000

    def run_rate(self, holding: GpuHolding) -> Decimal:
        """A holding's monthly run-rate: its cost in the window (cost per hour held x the
        hours it held) spread over the window, as a month. A notebook held 5 hours of a
        week runs at 5/168 of its hourly cost x 730, not at 730 of its hours."""
        if self.hours <= 0:
            return Decimal(0)
        share = min(Decimal(1), Decimal(repr(holding.held_hours)) / Decimal(repr(self.hours)))
        return (holding.cost_per_hour * share * MONTH_HOURS).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class Finding:
    id: str  # stable across runs for the same rule and scope (`finding_id`)
    rule: str
    severity: Severity
    scope: Mapping[str, str]  # team, namespace, workload, node: what it is about
    evidence: Mapping[str, Any]  # the numbers, the window, the percentile
    monthly_saving: Decimal  # a month of run-rate, in the facts' currency
    confidence: Decimal  # 0 to 1
    action: str  # what to do, in words
    patch: str | None = None  # YAML (a Deployment/Job patch, a node pool, a MIG config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "rule": self.rule, "severity": self.severity,
            "scope": dict(self.scope), "evidence": dict(self.evidence),
            "monthly_saving": str(self.monthly_saving.quantize(Decimal("0.01"))),
            "confidence": str(self.confidence), "action": self.action, "patch": self.patch,
        }  # fmt: skip


def finding_id(rule: str, scope: Mapping[str, str]) -> str:
    """The same rule on the same scope gets the same id on every run (so a dismissal
    sticks): the rule and a digest of the scope."""
    digest = hashlib.sha256(json.dumps([rule, sorted(scope.items())]).encode()).hexdigest()
    return f"{rule}-{digest[:12]}"


def severity_of(monthly_saving: Decimal, high: Decimal = Decimal(1000),
                medium: Decimal = Decimal(100)) -> Severity:  # fmt: skip
    if monthly_saving >= high:
        return "high"
    return "medium" if monthly_saving >= medium else "low"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between the closest ranks (as
    numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class RuleConfig(BaseModel):
    """What every rule takes; each rule's own config adds its thresholds.
    `min_monthly_saving` (money a month, in the facts' currency) is applied by `run_rules`
    to every rule's findings alike, never by a rule itself: a finding that saves less is
    dropped (a rule that groups, like cheaper-offer, is judged on its group's saving)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_monthly_saving: Decimal = Field(default=Decimal(10), ge=0)


Rule = Callable[[Facts, Any, int], list[Finding]]
RULES: dict[str, tuple[type[RuleConfig], Rule]] = {}


def rule(name: str, config: type[RuleConfig]) -> Callable[[Rule], Rule]:
    """Register a rule under a stable kebab-case name with its config model."""

    def register(fn: Rule) -> Rule:
        if name in RULES:
            raise ValueError(f"rule {name!r} is registered twice")
        RULES[name] = (config, fn)
        return fn

    return register


def enabled_rules(configs: Mapping[str, Mapping[str, Any]] | None = None,
                  names: Iterable[str] | None = None) -> list[str]:  # fmt: skip
    """The rules `run_rules` runs: those named (or all), less those configured off."""
    from aifinops.core.recommend import rules as _builtins  # noqa: F401  (registers them)

    chosen = list(names) if names is not None else sorted(RULES)
    return [n for n in chosen if n in RULES
            and RULES[n][0].model_validate(dict((configs or {}).get(n, {}))).enabled]  # fmt: skip


def run_rules(
    facts: Facts,
    now_ms: int,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    names: Iterable[str] | None = None,
) -> list[Finding]:
    """Every enabled rule (or those named) over the facts; findings under each rule's
    minimum saving dropped; the largest saving first."""
    from aifinops.core.recommend import rules as _builtins  # noqa: F401  (registers them)

    chosen = list(names) if names is not None else sorted(RULES)
    unknown = sorted(set(chosen) - set(RULES)) + sorted(set(configs or {}) - set(RULES))
    if unknown:
        raise ConfigError(f"unknown recommendation rule {', '.join(unknown)}",
                          where="recommendations", hint=", ".join(sorted(RULES)))  # fmt: skip
    out: list[Finding] = []
    for name in chosen:
        model, fn = RULES[name]
        cfg = model.model_validate(dict((configs or {}).get(name, {})))
        if cfg.enabled:
            out += [f for f in fn(facts, cfg, now_ms) if f.monthly_saving >= cfg.min_monthly_saving]
    return sorted(out, key=lambda f: (-f.monthly_saving, f.id))


# rules about how one workload uses its GPUs: for one workload their savings overlap (an
# idle notebook is also "rightsize"-able), so a total counts the largest of them only
OVERLAPPING = ("idle-gpu", "overprovisioned-gpus", "rightsize-gpu", "share-gpu", "off-hours")


@dataclass(frozen=True)
class Overlap:
    """Where one finding stands among those it overlaps: `others` are the positions (in the
    rows given) of the findings it overlaps, and `counted` whether its saving is added to a
    total."""

    others: tuple[int, ...]
    counted: bool


def overlaps(rows: Sequence[Mapping[str, Any]]) -> list[Overlap]:
    """For each finding (as `Finding.to_dict` writes them, or as listed), in order: the
    others it overlaps and whether its saving counts in a total.

    1. Two findings overlap when both are of the `OVERLAPPING` rules and their scopes share
       a workload (`scope.workload`; share-gpu's names several, comma-separated).
    2. Largest saving first (a tie: the smaller id, then the earlier row, so the choice
       does not depend on the order of the rows), a finding counts unless it overlaps one
       that already counts. So of the findings on one workload only the largest counts,
       and counted findings never share a workload: the total is one that can be had by
       applying all of them."""
    workloads = [_workloads(r) if r["rule"] in OVERLAPPING else frozenset() for r in rows]
    on: dict[str, list[int]] = {}  # workload -> the findings on it
    for i, named in enumerate(workloads):
        for w in named:
            on.setdefault(w, []).append(i)
    others = [
        tuple(sorted({j for w in named for j in on[w]} - {i})) for i, named in enumerate(workloads)
    ]
    counted: set[int] = set()
    order = sorted(
        range(len(rows)), key=lambda i: (-_saving(rows[i]), str(rows[i].get("id", "")), i)
    )
    for i in order:
        if counted.isdisjoint(others[i]):
            counted.add(i)
    return [Overlap(others[i], i in counted) for i in range(len(rows))]


def total_saving(rows: Iterable[Mapping[str, Any]]) -> Decimal:
    """The monthly saving of findings (as `Finding.to_dict` writes them, or as listed)
    without double counting: the sum of those that count (`overlaps`), so for one workload
    only its largest saving among the overlapping rules."""
    found = list(rows)
    return sum(
        (_saving(r) for r, o in zip(found, overlaps(found), strict=True) if o.counted),
        Decimal(0),
    )


def _saving(row: Mapping[str, Any]) -> Decimal:
    return Decimal(str(row["monthly_saving"]))


def _workloads(row: Mapping[str, Any]) -> frozenset[str]:
    named = (row.get("scope") or {}).get("workload") or ""
    return frozenset(w for w in named.split(",") if w)
