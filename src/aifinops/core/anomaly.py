"""Anomalies: a step (a day, or an hour) whose spend, GPU-hours, cost per 1M tokens, idle
share or billed cost leaves its expected band, each explained by the contributors that
moved, in a drill-down (e.g. team -> workload -> node, or provider -> SKU -> resource)
whose parts sum exactly to the jump.

1. The series. Each cell is one contributor's amounts in one step (cost, GPU-hours, idle
   cost, tokens, a bill's pricing quantity), under a path: the scope (a value of `--by`),
   then one value per level of the drill-down. A metric is a numerator over a denominator
   of summed amounts (spend, billed cost and GPU-hours over 1), so a scope's value is a
   ratio of sums.
2. The expected value of step t is a linear reference of past steps, so that it is
   additive across contributors: daily, the mean of the same weekday over the previous 4
   weeks where 28 days of history exist, else the mean of the previous 7 days; hourly, the
   same hour of day over the previous 7 days, else the previous 24 hours. A ratio's
   expected value is the reference's numerator over its denominator.
3. The band. The residuals r = actual - expected of up to the previous 28 days (7 days
   hourly) that had a reference; scale = 1.4826 x their median absolute deviation (robust
   to earlier anomalies). A step is anomalous when |r| > sensitivity x scale, |r| >=
   min_amount and |r| / expected >= min_relative (a step expected at nought passes the
   last). Spikes and drops alike. Too few residuals (under 7 days, or 24 hours): not judged.
4. The explanation. Each contributor c's part of the jump J is its own actual less its own
   reference (the same linear reference on its own series), so the parts sum to J exactly.
   For a ratio N/D the part is (dN_c - E x dD_c) / D_actual, E the expected ratio; these
   sum to J as well. Parts are rounded to the metric's quantum (spend: the cent) and what
   rounding leaves of the parent's rounded part goes to the largest child, so each level
   sums exactly to its parent; each child's share of its parent's part likewise sums to 1.
5. Tags: `new` (nothing in the reference steps), `ended` (nothing now), `price change` (at
   a level that carries quantities in one unit — a node's GPU-hours, a bill SKU's pricing
   quantity, `Series.priced` — a contributor whose cost per unit moved by more than 0.5 %:
   a cost metric's part split exactly into volume = dQuantity x old rate and price = the
   rest, new quantity x dRate), `new unpriced node` (GPU-hours unpriced on a node that had
   none in the reference), `bill restatement` (a later delivery of its billing period
   changed its lines for the step, `Cell.restated`; the anomaly says which and when)."""

from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from aifinops.core.windows import iso_z

ZERO = Decimal(0)
ONE = Decimal(1)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MAD_SCALE = 1.4826  # MAD x this estimates a normal distribution's standard deviation
PRICE_MOVE = Decimal("0.005")  # a node's rate moving by more than this is a price change
TOP = 10  # children shown per level; the rest as one `(n others)` part

METRICS = ("spend", "gpu_hours", "cost_per_1m_tokens", "idle_share", "billed")
BILL_METRICS = ("billed",)  # read from the stored bills, not the allocation
BILL_SCOPES = ("provider", "account", "sub_account", "service")  # their `--by`
MONEY = ("spend", "billed")  # metrics in the currency: a price change splits their parts
# the decimals each metric's figures are rounded to (spend to the cent)
PLACES = {"spend": 2, "gpu_hours": 3, "cost_per_1m_tokens": 4, "idle_share": 6, "billed": 2}
# the least jump worth an anomaly, per metric, where the settings name none
MIN_AMOUNT = {"spend": Decimal(50), "gpu_hours": Decimal(10),
              "cost_per_1m_tokens": Decimal("0.5"), "idle_share": Decimal("0.05"),
              "billed": Decimal(50)}  # fmt: skip


@dataclass(frozen=True)
class Amounts:
    """One contributor's amounts in one step. `cost` is the spend counted (idle shared in
    where the idle policy shares it; a bill's EffectiveCost); `idle_cost` is the part of it
    that was idle; `quantity` a bill's PricingQuantity (one unit per SKU)."""

    cost: Decimal = ZERO
    gpu_hours: Decimal = ZERO
    idle_cost: Decimal = ZERO
    tokens: Decimal = ZERO
    quantity: Decimal = ZERO

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(self.cost + other.cost, self.gpu_hours + other.gpu_hours,
                       self.idle_cost + other.idle_cost, self.tokens + other.tokens,
                       self.quantity + other.quantity)  # fmt: skip

    def over(self, n: int) -> Amounts:
        d = Decimal(n)
        return Amounts(self.cost / d, self.gpu_hours / d, self.idle_cost / d, self.tokens / d,
                       self.quantity / d)  # fmt: skip

    @property
    def present(self) -> bool:
        return bool(self.cost or self.gpu_hours or self.tokens or self.quantity)


def total(items: Iterable[Amounts]) -> Amounts:
    out = Amounts()
    for a in items:
        out = out + a
    return out


# each metric as (numerator, denominator or None for an additive metric)
Part = Callable[[Amounts], Decimal]
FORMS: dict[str, tuple[Part, Part | None]] = {
    "spend": (lambda a: a.cost, None),
    "gpu_hours": (lambda a: a.gpu_hours, None),
    "cost_per_1m_tokens": (lambda a: a.cost * 1_000_000, lambda a: a.tokens),
    "idle_share": (lambda a: a.idle_cost, lambda a: a.cost),
    "billed": (lambda a: a.cost, None),
}
# the quantity a level's cost is priced by (see Series.priced)
UNITS: dict[str, Part] = {"gpu_hours": lambda a: a.gpu_hours, "quantity": lambda a: a.quantity}


def value(metric: str, a: Amounts) -> Decimal | None:
    num, den = FORMS[metric]
    if den is None:
        return num(a)
    d = den(a)
    return num(a) / d if d else None


@dataclass(frozen=True)
class Cell:
    step: int  # index into Series.steps
    path: tuple[str, ...]  # the scope, then one value per drill-down level
    amounts: Amounts
    restated: tuple[str, ...] = ()  # the restated billing periods its lines come from


@dataclass(frozen=True)
class Series:
    """What the app read: consecutive steps (their starts, ms), the cells, and GPU-hours
    run unpriced per (step, node) over the whole fleet. `priced` names the levels that carry
    quantities in one unit, each with the `UNITS` amount their cost is priced by (a node
    by GPU-hours; a bill's SKU, and a resource under it, by pricing quantity): there a
    moved cost per unit is a price change."""

    metric: str
    levels: tuple[str, ...]  # names of path's parts: ("team", "workload", "node")
    step_ms: int
    steps: tuple[int, ...]
    first_judged: int  # steps before this index are history only
    cells: tuple[Cell, ...]
    unpriced: dict[tuple[int, str], Decimal] = field(default_factory=dict)
    priced: dict[str, str] = field(default_factory=lambda: {"node": "gpu_hours"})


@dataclass(frozen=True)
class Thresholds:
    sensitivity: float = 4.0
    min_amount: Decimal = Decimal(50)
    min_relative: Decimal = Decimal("0.2")


@dataclass(frozen=True)
class Contributor:
    level: str
    name: str
    actual: Decimal
    expected: Decimal
    delta: Decimal  # its part of the jump, rounded; a level's parts sum to its parent's
    share: Decimal | None  # of its parent's part; None where that part is nought
    tags: tuple[str, ...] = ()
    volume: Decimal | None = None  # a price change: dQuantity x old rate
    price: Decimal | None = None  # ... and the rest: new quantity x dRate
    children: tuple[Contributor, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "level": self.level, "name": self.name, "actual": str(self.actual),
            "expected": str(self.expected), "delta": str(self.delta),
            "share": None if self.share is None else str(self.share), "tags": list(self.tags),
        }  # fmt: skip
        if self.volume is not None:
            out["volume"], out["price"] = str(self.volume), str(self.price)
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


@dataclass(frozen=True)
class Anomaly:
    id: str
    metric: str
    by: str
    scope: str
    start_ms: int
    end_ms: int
    actual: Decimal
    expected: Decimal
    delta: Decimal
    band: Decimal  # sensitivity x scale: how far from expected a step may go
    relative: Decimal | None  # delta / expected; None when nothing was expected
    reference: str
    severity: str
    contributors: tuple[Contributor, ...]
    unpriced_nodes: tuple[str, ...] = ()
    restated: tuple[str, ...] = ()  # the restatements the step's lines come from

    @property
    def direction(self) -> str:
        return "spike" if self.delta > 0 else "drop"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "metric": self.metric, "by": self.by, "scope": self.scope,
            "start": iso_z(self.start_ms), "end": iso_z(self.end_ms),
            "direction": self.direction, "severity": self.severity,
            "actual": str(self.actual), "expected": str(self.expected),
            "delta": str(self.delta), "band": str(self.band),
            "relative": None if self.relative is None else str(self.relative),
            "reference": self.reference, "unpriced_nodes": list(self.unpriced_nodes),
            "restated": list(self.restated),
            "contributors": [c.to_dict() for c in self.contributors],
        }  # fmt: skip


def anomaly_id(metric: str, by: str, scope: str, start_ms: int) -> str:
    """Stable for a metric, scope and step: an anomaly alerts once, however often checked."""
    text = f"{metric}\x1f{by}\x1f{scope}\x1f{start_ms}"
    return "anomaly-" + hashlib.sha256(text.encode()).hexdigest()[:16]


# -- 2. the reference ------------------------------------------------------------------


def reference(t: int, step_ms: int) -> tuple[list[int], str] | None:
    """The earlier steps step t is compared with, and what they are in words."""
    if step_ms >= DAY_MS:
        if t >= 28:
            return [t - 7 * k for k in range(1, 5)], "same weekday, previous 4 weeks"
        if t >= 7:
            return list(range(t - 7, t)), "previous 7 days"
        return None
    if t >= 168:
        return [t - 24 * k for k in range(1, 8)], "same hour, previous 7 days"
    if t >= 24:
        return list(range(t - 24, t)), "previous 24 hours"
    return None


def _history(step_ms: int) -> tuple[int, int]:
    """(residuals looked back on, the fewest that make a band)."""
    return (28, 7) if step_ms >= DAY_MS else (168, 24)


# -- the search --------------------------------------------------------------------------


def find_anomalies(series: Series, th: Thresholds) -> list[Anomaly]:
    """Every judged step of every scope that leaves its band, explained (steps 1-5)."""
    metric, n = series.metric, len(series.steps)
    by_scope: dict[str, list[Amounts]] = defaultdict(lambda: [Amounts()] * n)
    cells_at: dict[tuple[str, int], list[Cell]] = defaultdict(list)  # the drill-down's
    for c in series.cells:
        row = by_scope[c.path[0]]
        row[c.step] = row[c.step] + c.amounts
        cells_at[(c.path[0], c.step)].append(c)
    look, fewest = _history(series.step_ms)
    out = []
    for scope, row in sorted(by_scope.items()):
        residuals: list[float | None] = [None] * n
        for t in range(n):
            ref = reference(t, series.step_ms)
            if ref is None:
                continue
            expected = total(row[r] for r in ref[0]).over(len(ref[0]))
            actual_v, expected_v = value(metric, row[t]), value(metric, expected)
            if actual_v is None or expected_v is None:
                continue
            r = actual_v - expected_v
            past = [x for x in residuals[max(0, t - look) : t] if x is not None]
            residuals[t] = float(r)
            if t < series.first_judged or len(past) < fewest:
                continue
            median = statistics.median(past)
            scale = MAD_SCALE * statistics.median(abs(x - median) for x in past)
            band = Decimal(repr(th.sensitivity * scale))
            relative = r / expected_v if expected_v else None
            if abs(r) <= band or abs(r) < th.min_amount:
                continue
            if relative is not None and abs(relative) < th.min_relative:
                continue
            out.append(_explain(series, cells_at, scope, t, ref, row, band, relative))
    return out


# -- 4. the explanation ------------------------------------------------------------------


def _explain(series: Series, cells_at: dict[tuple[str, int], list[Cell]], scope: str, t: int,
             ref: tuple[list[int], str], row: list[Amounts], band: Decimal,
             relative: Decimal | None) -> Anomaly:  # fmt: skip
    metric, places = series.metric, PLACES[series.metric]
    steps, label = ref
    actual_s, expected_s = row[t], total(row[r] for r in steps).over(len(steps))
    e_ratio = value(metric, expected_s) or ZERO
    d_actual = _den(metric, actual_s)
    # each path's amounts now and in each reference step
    now: dict[tuple[str, ...], Amounts] = defaultdict(Amounts)
    then: dict[tuple[str, ...], Amounts] = defaultdict(Amounts)
    restated: dict[tuple[str, ...], set[str]] = defaultdict(set)  # in step t only
    for c in (c for step in {t, *steps} for c in cells_at.get((scope, step), ())):
        for depth in range(1, len(c.path) + 1):
            key = c.path[:depth]
            if c.step == t:
                now[key] = now[key] + c.amounts
                restated[key] |= set(c.restated)
            elif depth > 1:
                then[key] = then[key] + c.amounts
    num, den = FORMS[metric]

    def part(key: tuple[str, ...]) -> Decimal:
        a, e = now[key], then[key].over(len(steps))
        dn = num(a) - num(e)
        if den is None:
            return dn
        return (dn - e_ratio * (den(a) - den(e))) / d_actual

    newly_unpriced = tuple(sorted(
        node for (s, node), hours in series.unpriced.items()
        if s == t and hours > 0 and not any(series.unpriced.get((r, node)) for r in steps)
    ))  # fmt: skip
    actual_v, expected_v = value(metric, actual_s) or ZERO, e_ratio
    jump = _round(actual_v - expected_v, places)
    paths = {k for k in set(now) | set(then) if len(k) > 1}

    def children(prefix: tuple[str, ...], parent: Decimal) -> tuple[Contributor, ...]:
        depth = len(prefix)
        if depth >= len(series.levels):
            return ()
        keys = sorted(k for k in paths if len(k) == depth + 1 and k[:depth] == prefix)
        exact = [part(k) for k in keys]
        rounded = _to_total(exact, places, parent)
        order = sorted(range(len(keys)), key=lambda i: (-abs(exact[i]), keys[i]))
        shown = [i for i in order if rounded[i] or exact[i]][:TOP]
        rest = [i for i in order if i not in shown]
        parts = []
        for i in shown:
            k = keys[i]
            parts.append(_contributor(series, k, now[k], then[k].over(len(steps)),
                                      rounded[i], bool(restated[k]), newly_unpriced,
                                      children(k, rounded[i])))  # fmt: skip
        rest_delta = sum((rounded[i] for i in rest), ZERO)
        if rest_delta:
            parts.append(Contributor(series.levels[depth], f"({len(rest)} others)", ZERO, ZERO,
                                     rest_delta, None))  # fmt: skip
        shares = _shares([p.delta for p in parts], parent)
        return tuple(
            Contributor(p.level, p.name, p.actual, p.expected, p.delta, s, p.tags, p.volume,
                        p.price, p.children)
            for p, s in zip(parts, shares, strict=True)
        )  # fmt: skip

    start = series.steps[t]
    return Anomaly(
        id=anomaly_id(metric, series.levels[0], scope, start), metric=metric,
        by=series.levels[0], scope=scope, start_ms=start, end_ms=start + series.step_ms,
        actual=_round(actual_v, places), expected=_round(expected_v, places), delta=jump,
        band=_round(band, places),
        relative=None if relative is None else _round(relative, 4), reference=label,
        severity="critical" if relative is None or abs(relative) >= 1 else "warning",
        contributors=children((scope,), jump), unpriced_nodes=newly_unpriced,
        restated=tuple(sorted(restated[(scope,)])),
    )  # fmt: skip


def _contributor(series: Series, key: tuple[str, ...], a: Amounts, e: Amounts,
                 delta: Decimal, restated: bool, newly_unpriced: tuple[str, ...],
                 kids: tuple[Contributor, ...]) -> Contributor:  # fmt: skip
    metric, places = series.metric, PLACES[series.metric]
    level = series.levels[len(key) - 1]
    tags = []
    if a.present and not e.present:
        tags.append("new")
    if e.present and not a.present:
        tags.append("ended")
    volume = price = None
    unit = series.priced.get(level)
    q_now, q_then = (UNITS[unit](a), UNITS[unit](e)) if unit else (ZERO, ZERO)
    if q_now > 0 and q_then > 0:
        old, new = e.cost / q_then, a.cost / q_now
        if old and abs(new - old) > PRICE_MOVE * abs(old):
            tags.append("price change")
            if metric in MONEY:
                volume = _round((q_now - q_then) * old, places)
                price = delta - volume
    if level == "node" and key[-1] in newly_unpriced:
        tags.append("new unpriced node")
    if restated:
        tags.append("bill restatement")
    actual, expected = value(metric, a), value(metric, e)
    return Contributor(level, key[-1], _round(actual or ZERO, places),
                       _round(expected or ZERO, places), delta, None, tuple(tags), volume, price,
                       kids)  # fmt: skip


def _den(metric: str, a: Amounts) -> Decimal:
    den = FORMS[metric][1]
    return ONE if den is None else den(a)


def _round(x: Decimal, places: int) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def _to_total(exact: Sequence[Decimal], places: int, whole: Decimal) -> list[Decimal]:
    """Each part rounded; what rounding leaves of `whole` goes to the largest part."""
    rounded = [_round(x, places) for x in exact]
    if rounded:
        biggest = max(range(len(exact)), key=lambda i: (abs(exact[i]), -i))
        rounded[biggest] += whole - sum(rounded, ZERO)
    return rounded


def _shares(deltas: Sequence[Decimal], whole: Decimal) -> list[Decimal | None]:
    if not whole or not deltas:
        return [None] * len(deltas)
    return list(_to_total([d / whole for d in deltas], 4, ONE))
