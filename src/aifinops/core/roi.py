"""ROI: what applied recommendations saved, measured, and what that pays back.

A finding marked applied at time A is measured on its own scope (the holdings of its team,
namespace and workload; a commitment's provider, region and instance type) over the
window of `measure` before A and the same length after it:

    run-rate(window) = cost in the window / the window's length x 730 h
    realised a month = run-rate(before) - run-rate(after), to the cent

so a saving is a month of run-rate, never a window's total multiplied up. The after
window is complete once `measure` has passed since A (until then the figure is
provisional and says how much of the window it saw).

Basis. From the allocation at list prices the figure is an `estimate`. Where bills cover
both windows and every node of the scope, the scope's cost is its allocation scaled to
each node's billed EffectiveCost, and the saving is `confirmed by bill` up to what the
bill of those nodes itself fell by: capacity freed by a workload but still billed (an
idle GPU given back to a node that keeps running) saved nothing yet, and the report says
so. A commitment changes no list price: without a bill its realised figure is the
finding's own estimate.

Totals: by category (spot, sharing, rightsizing, idle, commitments, placement), the
projected annual saving (12 months), the share of the baseline (the fleet's run-rate
plus what was saved: what it would cost without the changes) and the payback of an
investment (months until the savings, less any running cost, repay it; the investment
and the running cost in cents, as shown). Two applied findings measured on the same
workload over overlapping windows (an idle notebook also marked for spot, applied
together) saw the same drop: it counts once, the larger (a tie: the smaller id), the
other is listed with `counted` false."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aifinops.core.pricing import same_gpu
from aifinops.core.recommend.base import MONTH_HOURS, GpuHolding

CENT = Decimal("0.01")
HOUR_MS = 3_600_000
# a rule's saving as the ROI report files it
CATEGORIES = {
    "spot-candidate": "spot",
    "share-gpu": "sharing",
    "rightsize-gpu": "rightsizing",
    "overprovisioned-gpus": "rightsizing",
    "idle-gpu": "idle",
    "off-hours": "idle",
    "commitments": "commitments",
    "cheaper-offer": "placement",
    "unattributed-spend": "attribution",
}
CATEGORY_ORDER = ("spot", "sharing", "rightsizing", "idle", "commitments", "placement",
                  "attribution", "other")  # fmt: skip
CONFIRMED = "confirmed by bill"
ESTIMATE = "estimate"


def category_of(rule: str) -> str:
    return CATEGORIES.get(rule, "other")


def run_rate(cost: Decimal, span_ms: int) -> Decimal:
    """A window's cost as a month (730 h) of the same rate; unrounded."""
    if span_ms <= 0:
        return Decimal(0)
    return cost * MONTH_HOURS * HOUR_MS / span_ms


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def _values(v: str) -> set[str]:
    return {p for p in v.split(",") if p} if v else set()


def scope_matches(scope: Mapping[str, str], h: GpuHolding) -> bool:
    """Is holding `h` part of a finding's scope? A workload scope by team, namespace and
    workload (not the node: a workload moved to other nodes is still itself; a joined
    scope like share-gpu's lists several, comma-separated); a group of runs
    (cheaper-offer's) by team, namespace, kind and GPU model, wherever they run (moving
    them is the change); a commitment's by provider, region and instance type."""
    if scope.get("workload"):
        return all(
            getattr(h, k) in _values(scope[k])
            for k in ("team", "namespace", "workload")
            if scope.get(k)
        )
    if scope.get("kind") and scope.get("gpu_model"):  # cheaper-offer's group of runs
        return (
            h.team in _values(scope.get("team", ""))
            and h.namespace in _values(scope.get("namespace", ""))
            and h.kind == scope["kind"]
            and same_gpu(h.gpu_model, scope["gpu_model"])
        )
    if scope.get("instance_type"):
        return (
            (h.instance_type or "").lower() == scope["instance_type"].lower()
            and (h.provider or "").lower() == (scope.get("provider") or "").lower()
            and (not scope.get("region") or (h.region or "").lower() == scope["region"].lower())
        )
    return False


def holding_cost(h: GpuHolding) -> Decimal:
    """What a holding cost in its window (its allocation: cost per held hour x held
    hours)."""
    return h.cost_per_hour * Decimal(repr(h.held_hours))


@dataclass(frozen=True)
class Side:
    """The scope over one window: its cost at list price, billed (None: the bill does not
    cover it), and the billed cost of the nodes it ran on."""

    start_ms: int
    end_ms: int
    list_cost: Decimal
    billed_cost: Decimal | None = None
    nodes: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()  # those of the scope that held GPUs in the window

    @property
    def span_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class Measure:
    """One applied finding, measured."""

    finding_id: str
    rule: str
    scope: Mapping[str, str]
    applied_ms: int
    measure_ms: int
    expected: Decimal  # the finding's own monthly saving
    before: Side | None  # None: nothing of the scope in the window before
    after: Side | None  # None: no time has passed since it was applied
    node_bill_drop: Decimal | None = None  # monthly: what the bill of its nodes fell by
    notes: tuple[str, ...] = ()

    @property
    def category(self) -> str:
        return category_of(self.rule)

    @property
    def complete(self) -> bool:
        return self.after is not None and self.after.span_ms >= self.measure_ms

    @property
    def measured(self) -> bool:
        return self.before is not None and self.after is not None and self.after.span_ms > 0

    @property
    def basis(self) -> str:
        if not self.measured:
            return ESTIMATE
        assert self.before is not None and self.after is not None
        billed = self.before.billed_cost is not None and self.after.billed_cost is not None
        return CONFIRMED if billed and self.node_bill_drop is not None else ESTIMATE

    def list_saving(self) -> Decimal | None:
        if not self.measured:
            return None
        assert self.before is not None and self.after is not None
        return cents(run_rate(self.before.list_cost, self.before.span_ms)
                     - run_rate(self.after.list_cost, self.after.span_ms))  # fmt: skip

    def realised(self) -> Decimal | None:
        """A month of realised saving: by the bill where it covers the scope (at most what
        the bill of its nodes fell by), else from the allocation at list prices; a
        commitment without a bill: the finding's estimate."""
        if not self.measured:
            return None
        assert self.before is not None and self.after is not None
        if self.basis == CONFIRMED:
            assert self.before.billed_cost is not None and self.after.billed_cost is not None
            assert self.node_bill_drop is not None
            scope = (run_rate(self.before.billed_cost, self.before.span_ms)
                     - run_rate(self.after.billed_cost, self.after.span_ms))  # fmt: skip
            return cents(min(scope, max(self.node_bill_drop, Decimal(0))))
        if self.rule == "commitments":
            return cents(self.expected)
        return self.list_saving()

    def span(self) -> tuple[int, int]:
        """The time it is measured over: the window before to the end of the one after."""
        end = self.after.end_ms if self.after is not None else self.applied_ms
        return (self.applied_ms - self.measure_ms, end)

    def workloads(self) -> frozenset[str]:
        return frozenset((self.before.workloads if self.before else ())
                         + (self.after.workloads if self.after else ()))  # fmt: skip

    def measured_on_scope(self) -> bool:
        """Its saving is its scope's cost measured before and after (not a commitment's
        estimate), so another measured on the same workload at the same time saw it too."""
        return self.measured and not (self.rule == "commitments" and self.basis != CONFIRMED)

    def baseline(self) -> Decimal | None:
        """The scope's monthly run-rate before (billed where confirmed)."""
        if self.before is None:
            return None
        cost = self.before.list_cost
        if self.basis == CONFIRMED and self.before.billed_cost is not None:
            cost = self.before.billed_cost
        return cents(run_rate(cost, self.before.span_ms))

    def to_dict(self) -> dict[str, Any]:
        realised = self.realised()
        state = ("measured" if self.complete and self.measured else
                 "measuring" if self.measured else
                 "waiting" if self.before is not None else "no data before")  # fmt: skip
        seen = self.after.span_ms if self.after is not None else 0
        return {
            "id": self.finding_id, "rule": self.rule, "category": self.category,
            "scope": dict(self.scope), "applied": self.applied_ms,
            "state": state, "basis": self.basis,
            "window_seen": round(min(1.0, seen / self.measure_ms), 4) if self.measure_ms else 0,
            "expected_monthly": str(cents(self.expected)),
            "realised_monthly": None if realised is None else str(realised),
            "baseline_monthly": None if self.baseline() is None else str(self.baseline()),
            "list_saving_monthly": None if self.list_saving() is None
            else str(self.list_saving()),
            "notes": list(self.notes),
        }  # fmt: skip


@dataclass(frozen=True)
class Category:
    name: str
    findings: int = 0
    realised_monthly: Decimal = Decimal(0)
    confirmed_monthly: Decimal = Decimal(0)  # the part confirmed by the bill
    potential_monthly: Decimal = Decimal(0)  # open findings, overlaps counted once


@dataclass(frozen=True)
class RoiReport:
    currency: str
    measures: tuple[Measure, ...]
    categories: tuple[Category, ...]
    fleet_monthly: Decimal  # the fleet's run-rate now
    investment: Decimal
    monthly_cost: Decimal
    notes: tuple[str, ...] = field(default_factory=tuple)
    # the measures whose saving is in the totals (`counted_once`)
    counted: frozenset[str] = frozenset()

    @property
    def realised_monthly(self) -> Decimal:
        return sum((c.realised_monthly for c in self.categories), Decimal(0))

    @property
    def confirmed_monthly(self) -> Decimal:
        return sum((c.confirmed_monthly for c in self.categories), Decimal(0))

    @property
    def potential_monthly(self) -> Decimal:
        return sum((c.potential_monthly for c in self.categories), Decimal(0))

    @property
    def baseline_monthly(self) -> Decimal:
        """What the fleet would cost a month without the changes: its run-rate now plus
        what they save."""
        return self.fleet_monthly + max(self.realised_monthly, Decimal(0))

    def saving_percent(self) -> Decimal | None:
        base = self.baseline_monthly
        return None if base <= 0 else cents(self.realised_monthly * 100 / base)

    def payback_months(self) -> Decimal | None:
        """Months until the savings (less the running cost) repay the investment; 0 with
        no investment; None when nothing is left a month to repay it with."""
        net = self.realised_monthly - self.monthly_cost
        if self.investment <= 0:
            return Decimal(0)
        if net <= 0:
            return None
        return (self.investment / net).quantize(Decimal("0.1"), ROUND_HALF_UP)

    def to_dict(self) -> dict[str, Any]:
        pct, payback = self.saving_percent(), self.payback_months()
        return {
            "currency": self.currency,
            "realised_monthly": str(cents(self.realised_monthly)),
            "confirmed_by_bill_monthly": str(cents(self.confirmed_monthly)),
            "projected_annual": str(cents(self.realised_monthly * 12)),
            "potential_monthly": str(cents(self.potential_monthly)),
            "fleet_monthly": str(cents(self.fleet_monthly)),
            "baseline_monthly": str(cents(self.baseline_monthly)),
            "saving_percent": None if pct is None else str(pct),
            "investment": str(cents(self.investment)),
            "monthly_cost": str(cents(self.monthly_cost)),
            "payback_months": None if payback is None else str(payback),
            "categories": [
                {"category": c.name, "applied": c.findings,
                 "realised_monthly": str(cents(c.realised_monthly)),
                 "confirmed_by_bill_monthly": str(cents(c.confirmed_monthly)),
                 "projected_annual": str(cents(c.realised_monthly * 12)),
                 "potential_monthly": str(cents(c.potential_monthly))}
                for c in self.categories
            ],
            "applied": [{**m.to_dict(), "counted": m.finding_id in self.counted,
                         "overlaps": [o.finding_id for o in self.measures
                                      if o is not m and _overlap(m, o)]}
                        for m in self.measures],
            "notes": list(self.notes),
        }  # fmt: skip


def _overlap(a: Measure, b: Measure) -> bool:
    """Did two applied findings see the same drop: both measured on their scope, sharing
    a workload, over windows that overlap in time?"""
    if not (a.measured_on_scope() and b.measured_on_scope()):
        return False
    (a0, a1), (b0, b1) = a.span(), b.span()
    return a0 < b1 and b0 < a1 and not a.workloads().isdisjoint(b.workloads())


def counted_once(measures: Sequence[Measure]) -> frozenset[str]:
    """The measures whose realised saving counts in a total:

    1. Those with a realised figure, largest first (a tie: the smaller id).
    2. Each counts unless it overlaps (`_overlap`) one that already counts: a drop seen
       by two findings applied together is counted once."""
    order = sorted((m for m in measures if m.realised() is not None),
                   key=lambda m: (-(m.realised() or Decimal(0)), m.finding_id))  # fmt: skip
    counted: list[Measure] = []
    for m in order:
        if not any(_overlap(m, c) for c in counted):
            counted.append(m)
    return frozenset(m.finding_id for m in counted)


def summarise(
    measures: Sequence[Measure],
    potential: Mapping[str, Decimal],
    *,
    currency: str,
    fleet_monthly: Decimal,
    investment: Decimal = Decimal(0),
    monthly_cost: Decimal = Decimal(0),
    notes: Iterable[str] = (),
) -> RoiReport:
    """The report: measured savings by category (a finding not yet measured counts
    nothing, nor one whose drop another counts: `counted_once`), open findings' potential
    beside them; the investment and running cost in cents."""
    counted = counted_once(measures)
    cats: dict[str, dict[str, Any]] = {}
    for m in measures:
        c = cats.setdefault(m.category, {"n": 0, "r": Decimal(0), "b": Decimal(0)})
        c["n"] += 1
        realised = m.realised()
        if realised is not None and m.finding_id in counted:
            c["r"] += realised
            if m.basis == CONFIRMED:
                c["b"] += realised
    names = [n for n in CATEGORY_ORDER if n in cats or potential.get(n)]
    categories = tuple(
        Category(n, cats.get(n, {}).get("n", 0), cats.get(n, {}).get("r", Decimal(0)),
                 cats.get(n, {}).get("b", Decimal(0)), cents(potential.get(n, Decimal(0))))
        for n in names
    )  # fmt: skip
    return RoiReport(currency, tuple(measures), categories, cents(fleet_monthly),
                     cents(investment), cents(monthly_cost), tuple(notes), counted)  # fmt: skip
