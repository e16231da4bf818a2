"""A budget's status at an instant (the `CostBudget` status fields), its projected period
spend, and the alert events that status gives against what has fired before.

The projection comes from the forecast (`core/forecast.py`): the daily series is the
complete local days before `at` (up to HISTORY_DAYS; a day without spend between the first
day with spend and `at` counts as zero); the method is chosen on it by backtest (with fewer
than 14 days, the run-rate with weekday seasonality); the rest of the period is the rest of
today and each day up to the period's end; the interval is the forecast's for that many
days; never below spend so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from aifinops.core.budgets import (
    HUNDRED,
    AlertEvent,
    Budget,
    Period,
    alert_key,
)

Z80, Z95 = 1.2816, 1.96
CENT = Decimal("0.01")
HISTORY_DAYS = 56


@dataclass(frozen=True)
class Projection:
    method: str
    mean: Decimal
    low80: Decimal
    high80: Decimal
    low95: Decimal
    high95: Decimal
    crossing: date | None  # the local day spend reached (or is expected to reach) the limit
    note: str | None = None  # why the method is the run-rate (too little history)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            **({"note": self.note} if self.note else {}),
            "amount": _money(self.mean),
            "interval80": [_money(self.low80), _money(self.high80)],
            "interval95": [_money(self.low95), _money(self.high95)],
            "limitCrossingDate": self.crossing.isoformat() if self.crossing else None,
        }


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def project(
    daily: Mapping[date, Decimal],
    period: Period,
    at: datetime,
    spend: Decimal,
    limit: Decimal,
) -> Projection:
    """Projected spend for the whole period holding `at` (see the module's steps).
    `daily` is spend per local day, history before the period included."""
    from aifinops.core.forecast import forecast

    tz = period.start.tzinfo
    local = at.astimezone(tz)
    today = local.date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=tz)
    today_part = min(1.0, max(0.0, (local - midnight) / timedelta(days=1)))
    seen = sorted(d for d, v in daily.items() if d < today and v)
    first = max(seen[0], today - timedelta(days=HISTORY_DAYS)) if seen else today
    values = [float(daily.get(first + timedelta(days=i), 0))
              for i in range((today - first).days)]  # fmt: skip
    # the rest of the period: (day, the share of it still to come)
    rest: list[tuple[date, float]] = []
    last = period.end.astimezone(tz).date()
    if today < last:
        rest.append((today, 1.0 - today_part))
    d = today + timedelta(days=1)
    while d < last:
        rest.append((d, 1.0))
        d += timedelta(days=1)
    today_spend = float(daily.get(today, 0))
    partial = today_spend / today_part if today_part > 0.04 else 0.0
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    f = forecast(values, start=start, step=timedelta(days=1), horizon=max(1, len(rest)),
                 partial=partial)  # fmt: skip
    expected = [(d, f.steps[k].mean * part) for k, (d, part) in enumerate(rest)]
    mean = float(spend) + sum(v for _, v in expected)
    whole = f.total(len(rest))
    below80, above80 = whole.mean - whole.low80, whole.high80 - whole.mean
    below95, above95 = whole.mean - whole.low95, whole.high95 - whole.mean
    if not rest:
        below80 = above80 = below95 = above95 = 0.0

    def dec(x: float) -> Decimal:
        return Decimal(repr(round(x, 6)))

    floor = float(spend)
    crossing = _crossing(daily, period, spend, limit, expected)
    return Projection(
        f.method, dec(mean), dec(max(floor, mean - below80)), dec(mean + above80),
        dec(max(floor, mean - below95)), dec(mean + above95), crossing, f.note,
    )  # fmt: skip


def _crossing(
    daily: Mapping[date, Decimal],
    period: Period,
    spend: Decimal,
    limit: Decimal,
    expected: Sequence[tuple[date, float]],
) -> date | None:
    if spend >= limit:
        total = Decimal(0)
        for d in period.days():
            total += daily.get(d, Decimal(0))
            if total >= limit:
                return d
        return None
    running = float(spend)
    for d, v in expected:
        running += v
        if running >= float(limit):
            return d
    return None


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period: Period
    at: datetime
    spend: Decimal
    projection: Projection
    exceeded_since: datetime | None
    alerts_fired: tuple[str, ...]
    breakdown: Mapping[str, Sequence[tuple[str, Decimal]]] = field(default_factory=dict)
    contributors: tuple[tuple[str, Decimal], ...] = ()
    spend_basis: str = "allocation"
    currency: str = "USD"

    @property
    def limit(self) -> Decimal:
        return self.budget.spec.amount

    @property
    def percentage(self) -> Decimal:
        return (self.spend / self.limit * HUNDRED).quantize(Decimal("0.01"))

    @property
    def state(self) -> str:
        """ok, warning (a threshold passed, or the projection over the limit), exceeded."""
        if self.spend >= self.limit:
            return "exceeded"
        lowest = min((a.threshold_percent for a in self.budget.spec.alerts
                      if a.basis == "actual"), default=Decimal(80))  # fmt: skip
        if self.spend * HUNDRED >= lowest * self.limit or self.projection.mean >= self.limit:
            return "warning"
        return "ok"

    @property
    def enforcement_active(self) -> bool:
        """The limit has been exceeded for the grace period, under throttle or block."""
        enf = self.budget.spec.enforcement
        if enf.action == "alert" or not self.budget.spec.enabled or self.exceeded_since is None:
            return False
        return self.at - self.exceeded_since >= timedelta(minutes=enf.grace_period_minutes)

    @property
    def days_remaining(self) -> Decimal:
        left = (self.period.end - self.at) / timedelta(days=1)
        return Decimal(repr(max(0.0, left))).quantize(Decimal("0.01"))

    def to_dict(self) -> dict[str, Any]:
        """The `CostBudget` status fields, and what they rest on."""
        return {
            "name": self.budget.name,
            "enabled": self.budget.spec.enabled,
            "scope": self.budget.spec.scope.words(),
            "period": {"start": self.period.start.isoformat(), "end": self.period.end.isoformat()},
            "at": self.at.isoformat(),
            "currency": self.currency,
            "limit": _money(self.limit),
            "currentSpend": _money(self.spend),
            "percentageUsed": str(self.percentage),
            "budgetStatus": self.state,
            "projectedPeriodSpend": self.projection.to_dict(),
            "daysRemaining": str(self.days_remaining),
            "alertsFired": list(self.alerts_fired),
            "enforcement": self.budget.spec.enforcement.action,
            "enforcementActive": self.enforcement_active,
            "exceededSince": self.exceeded_since.isoformat() if self.exceeded_since else None,
            "spendBasis": self.spend_basis,
            "breakdown": {
                dim: [{"name": n, "spend": _money(v)} for n, v in rows]
                for dim, rows in self.breakdown.items()
            },
            "topContributors": [{"name": n, "spend": _money(v)} for n, v in self.contributors],
        }


def alert_events(status: BudgetStatus, states: Mapping[str, str], at_iso: str) -> list[AlertEvent]:
    """What to tell, given each alert key's state so far in this period (`firing` or
    `resolved`; absent: never fired): a threshold reached for the first time fires; a
    firing one whose value fell back under its threshold (a credit, a restatement) resolves.
    A resolved alert does not fire again in the same period (once per threshold per
    period); the next period has new keys, so every alert re-arms."""
    spec = status.budget.spec
    if not spec.enabled:
        return []
    out = []
    for rule in spec.alerts:
        key = alert_key(status.budget.name, status.period, rule)
        value = status.projection.mean if rule.basis == "forecast" else status.spend
        over = value * HUNDRED >= rule.threshold_percent * status.limit
        before = states.get(key)
        action: Literal["fire", "resolve"]
        if over and before is None:
            action = "fire"
        elif not over and before == "firing":
            action = "resolve"
        else:
            continue
        out.append(AlertEvent(
            key=key, action=action, budget=status.budget.name, alert=rule.label(),
            scope=spec.scope.words(), threshold_percent=rule.threshold_percent,
            basis=rule.basis, severity=rule.severity, spend=status.spend.quantize(CENT),
            limit=status.limit, forecast=status.projection.mean.quantize(CENT),
            currency=status.currency, period_start=status.period.start.isoformat(),
            period_end=status.period.end.isoformat(), at=at_iso,
            top_contributors=status.contributors[:3], channels=tuple(rule.channels),
        ))  # fmt: skip
    return out
