"""Forecasts of spend per scope (`aifinops forecast`, `/api/v1/forecast`), their month-end
backtest on the store's own history (`aifinops forecast backtest`), and the monthly
projection on /metrics.

The history is the allocation per day (per hour for a horizon of two days or less), one
series per scope, from the cost engine: the same money `cost` shows. The forecast starts at
the newest sample, not the clock (a collector that stopped leaves the history it saw).
Known changes are honoured:
- a period reset: each month's total is reported on its own, the next from zero;
- a workload that ended: one that had spend on at least `forecast.ended_min_days` days and
  has had none since a day before the newest sample (within the last week) is taken out of
  its scope's history, so its spend is not carried forward;
- a committed purchase (`forecast.commitments`): its fee from its start (and the on-demand
  spend it replaces taken off), added to the scope it names, once.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aifinops.app.context import AppContext
from aifinops.app.costs import CostQuery, Costs
from aifinops.core.forecast import (
    Forecast,
    Interval,
    forecast,
    months,
    period_backtest,
    summarise,
)
from aifinops.core.model import BUCKETS, normalise_dimension
from aifinops.core.windows import align_down, from_ms, iso_z, parse_duration
from aifinops.errors import UsageError

CENT = Decimal("0.01")
HOURLY_UP_TO = timedelta(days=2)  # a horizon up to this is forecast per hour
HOURLY_HISTORY = timedelta(days=14)
MAX_HORIZON = timedelta(days=366)
CHECKPOINTS = (7, 14, 21)


def _money(x: float | Decimal) -> str:
    return str(Decimal(repr(float(x))).quantize(CENT))


def _pair(low: float, high: float) -> list[str]:
    return [_money(low), _money(high)]


def month_start(d: datetime) -> datetime:
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def next_month(d: datetime) -> datetime:
    return datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)


@dataclass
class PeriodTotal:
    start: datetime
    end: datetime
    actual: float  # spend already in the period
    total: Interval  # actual + the forecast of the rest (up to the horizon)
    complete: bool  # the horizon reaches the period's end

    def to_dict(self) -> dict[str, Any]:
        t = self.total
        return {"start": iso_z(self.start), "end": iso_z(self.end),
                "actual": _money(self.actual), "forecast": _money(t.mean),
                "interval80": _pair(t.low80, t.high80), "interval95": _pair(t.low95, t.high95),
                "complete": self.complete}  # fmt: skip


@dataclass
class ScopeForecast:
    key: dict[str, str]
    forecast: Forecast
    steps: list[Interval]  # with the known changes
    periods: list[PeriodTotal]
    adjustments: list[dict[str, Any]] = field(default_factory=list)
    history_total: float = 0.0

    def to_dict(self, points: bool = True) -> dict[str, Any]:
        f = self.forecast
        out: dict[str, Any] = {
            "key": self.key, "method": f.method, "note": f.note, "history_steps": f.history,
            "backtest": {"origins": f.origins, "mean_abs_cumulative_error": f.scores},
            "adjustments": self.adjustments,
            "periods": [p.to_dict() for p in self.periods],
        }  # fmt: skip
        if points:
            out["points"] = [
                {"start": iso_z(f.at(k)), "mean": _money(s.mean),
                 "interval80": _pair(s.low80, s.high80),
                 "interval95": _pair(s.low95, s.high95)}
                for k, s in enumerate(self.steps)
            ]  # fmt: skip
        return out


@dataclass
class ForecastResult:
    at: datetime
    step: timedelta
    origin: datetime  # the start of the step the forecast begins in (today, this hour)
    end: datetime  # the horizon's end
    by: tuple[str, ...]
    scopes: list[ScopeForecast]
    total: ScopeForecast | None
    currency: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self, points: bool = True) -> dict[str, Any]:
        return {
            "at": iso_z(self.at), "step": "1h" if self.step == timedelta(hours=1) else "1d",
            "from": iso_z(self.origin), "to": iso_z(self.end), "by": list(self.by),
            "currency": self.currency, "period": "month",
            "scopes": [s.to_dict(points) for s in self.scopes],
            "total": self.total.to_dict(points) if self.total else None,
            "notes": self.notes,
        }  # fmt: skip


@dataclass
class _Series:
    """One scope's spend per step over the history, and per workload within it."""

    values: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    workloads: dict[str, dict[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Frame:
    """One forecast's time frame: the series from `start`, the step in progress from
    `origin` (`now` inside it), the horizon's `end`; where the data begin, and the model's
    history in steps (`back`)."""

    start: datetime
    origin: datetime
    now: datetime
    end: datetime
    step: timedelta
    data_start: datetime
    back: int
    methods: Sequence[str] | None = None

    def index(self, t: datetime) -> int:
        return int((t - self.start) / self.step)


class Forecasts:
    def __init__(self, ctx: AppContext, costs: Costs):
        self.ctx, self.costs = ctx, costs

    # -- the forecast ---------------------------------------------------------------------
    def forecast(
        self,
        *,
        by: Sequence[str] = ("team",),
        horizon: str | None = None,
        period_end: bool = False,
        at: datetime | None = None,
        history: str | None = None,
        methods: Sequence[str] | None = None,
    ) -> ForecastResult:
        cfg = self.ctx.settings.forecast
        if horizon and period_end:
            raise UsageError("give --horizon or --period-end, not both",
                             where="--horizon/--period-end")  # fmt: skip
        reach = parse_duration(cfg.horizon if horizon is None else horizon, what="--horizon")
        if not timedelta(hours=1) <= reach <= MAX_HORIZON:
            raise UsageError(f"a horizon from 1h to 366d, not {horizon!r}", where="--horizon")
        back = parse_duration(cfg.history if history is None else history, what="--history")
        if not timedelta(days=1) <= back <= timedelta(days=3 * 366):
            raise UsageError(f"a history from 1d to 3 years, not {history!r}", where="--history")
        now, data_start = self._now(at)
        hourly = not period_end and reach <= HOURLY_UP_TO
        step = timedelta(hours=1) if hourly else timedelta(days=1)
        origin = align_down(now, step)
        end = next_month(origin) if period_end else align_down(now + reach, step)
        if end <= origin:
            end = origin + step
        if hourly:
            back = min(back, HOURLY_HISTORY)
        # the series from the month's start at least (what the month has spent), the
        # model's history no longer than `back`
        start = min(align_down(origin - back, step), month_start(origin))
        frame = _Frame(start, origin, now, end, step, data_start, int(back / step), methods)
        dims = _dimensions(by)
        series = self._series(dims, start, now, step)
        notes: list[str] = []
        asked = at or self.ctx.clock()
        if asked - now >= timedelta(days=1):  # a collector that stopped: say how long ago
            notes.append(
                f"the newest sample ends {iso_z(now)}, {(asked - now).days} day(s) "
                f"before {'--at' if at else 'now'}: the forecast starts there"
            )
        quiet = sorted("/".join(v for _, v in k) for k, s in series.items()
                       if not any(v > 0 for v in s.values.values()))  # fmt: skip
        if quiet:
            notes.append(f"no spend in the history, not forecast: {', '.join(quiet)}")
        scopes = [self._scope(dict(k), s, frame, notes)
                  for k, s in sorted(series.items())
                  if any(v > 0 for v in s.values.values())]  # fmt: skip
        self._commitments(scopes, dims, frame, notes)
        scopes.sort(key=lambda s: -s.periods[0].total.mean if s.periods else 0)
        total = None
        if len(scopes) > 1:
            merged = _Series()
            for s in series.values():
                for i, v in s.values.items():
                    merged.values[i] += v
                for w, vs in s.workloads.items():
                    into = merged.workloads.setdefault(w, defaultdict(float))
                    for i, v in vs.items():
                        into[i] += v
            total = self._scope({}, merged, frame, [])
            self._commitments([total], (), frame, [], into_total=True)
        elif scopes:
            total = scopes[0]
        if not scopes:
            notes.append("no spend in the history: nothing to forecast")
        return ForecastResult(now, step, origin, end, dims, scopes, total,
                              self.ctx.settings.currency, notes)  # fmt: skip

    def _now(self, at: datetime | None) -> tuple[datetime, datetime]:
        """Where the forecast begins (`at`, or the clock, but no later than the newest
        sample's end) and where the data begin."""
        extent = self.costs.data_extent()
        if extent is None:
            raise UsageError(
                "the store holds no GPU samples yet", where=self.ctx.store_name,
                hint="ingest some (aifinops ingest ...) or run `aifinops demo`")  # fmt: skip
        newest = from_ms(self.costs.data_end() or extent[1] + 1)
        data_start = from_ms(extent[0])
        if at is not None and at <= data_start:
            raise UsageError(
                f"{iso_z(at)} is not after the first sample ({iso_z(data_start)}): "
                "there is no history to forecast from", where="--at",
                hint=f"a time from {iso_z(data_start)} to {iso_z(newest)}")  # fmt: skip
        now = at or self.ctx.clock()
        return min(now, newest), data_start

    def _series(self, dims: tuple[str, ...], start: datetime, now: datetime,
                step: timedelta) -> dict[tuple[tuple[str, str], ...], _Series]:  # fmt: skip
        """Spend (allocation plus its share of idle) per scope and step index from `start`,
        and per workload. Daily: one query of the cost engine by scope and workload.
        Hourly: the scopes by the hour, and the workloads by the day (a fleet's workloads
        by the hour are too many rows to be worth it), each day's spend of a workload
        spread evenly over its hours: only the ended workloads' part is read from it."""
        span = f"{start.isoformat()},{now.isoformat()}"
        # by workload too (once: `--by workload` names it already)
        levels = dims if "workload" in dims else (*dims, "workload")
        by_workload = self.costs.cost(CostQuery(window=span, step="1d", by=levels)).rows
        out: dict[tuple[tuple[str, str], ...], _Series] = defaultdict(_Series)
        per_day = int(timedelta(days=1) / step)
        last = int((now - start) / step)  # the step in progress
        for r in by_workload:
            if not r.start:
                continue
            t = datetime.fromisoformat(r.start.replace("Z", "+00:00"))
            i = int((t - start) / step)
            v = float(r.total_cost + r.idle_cost)
            s = out[tuple((d, r.key.get(d, "")) for d in dims)]
            ws = s.workloads.setdefault(r.key.get("workload", ""), defaultdict(float))
            if per_day == 1:
                s.values[i] += v
                ws[i] += v
                continue
            hours = range(i, min(i + per_day, last + 1))
            for h in hours:
                ws[h] += v / len(hours)
        if per_day > 1:
            for r in self.costs.cost(CostQuery(window=span, step="1h", by=dims)).rows:
                if r.start:
                    t = datetime.fromisoformat(r.start.replace("Z", "+00:00"))
                    key = tuple((d, r.key.get(d, "")) for d in dims)
                    out[key].values[int((t - start) / step)] += float(r.total_cost + r.idle_cost)
        return out

    def _scope(self, key: dict[str, str], s: _Series, fr: _Frame,
               notes: list[str]) -> ScopeForecast:  # fmt: skip
        cfg = self.ctx.settings.forecast
        start, origin, now, end, step = fr.start, fr.origin, fr.now, fr.end, fr.step
        current = int((origin - start) / step)  # the index of the step in progress
        values = dict(s.values)
        adjustments = []
        per_day = int(timedelta(days=1) / step)
        min_steps = cfg.ended_min_days * per_day
        for w, ws in sorted(s.workloads.items()):
            active = sorted(i for i, v in ws.items() if v > 0 and i <= current)
            if w in BUCKETS or len(active) < min_steps:
                continue
            last = active[-1]
            # ended: no spend for a longer stretch than any before it (a weekend job's
            # weekdays are not an end), at least the last complete step and the one in
            # progress, and within a week (an older end is in the history's level already)
            gap = current - last  # steps without spend since, the one in progress included
            usual = max((b - a - 1 for a, b in itertools.pairwise(active)), default=0)
            if gap >= 2 and gap - 1 > usual and last >= current - 7 * per_day:
                for i, v in ws.items():
                    values[i] = values.get(i, 0.0) - v
                recent = [ws.get(i, 0.0) for i in range(last - per_day + 1, last + 1)]
                adjustments.append({
                    "kind": "workload ended", "workload": w,
                    "last_spend": iso_z(start + step * last),
                    "removed_per_day": _money(sum(recent)),
                })  # fmt: skip
        # the history begins at the first step with spend, and never in a step the data
        # begin part-way through (a first day of a few hours is no day's spend)
        complete = max(0, math.ceil((fr.data_start - start) / step), current - fr.back)
        seen = [i for i in range(complete, current) if values.get(i, 0) > 1e-12]
        first = seen[0] if seen else current
        hist = [max(0.0, values.get(i, 0.0)) for i in range(first, current)]
        so_far = max(0.0, values.get(current, 0.0))
        # the rate of the step in progress over the part of it the data cover (a store
        # whose first sample is at 22:00 has spent two hours' worth by midnight, not 24)
        seen_part = (now - max(origin, fr.data_start)) / step
        horizon = max(1, math.ceil((end - origin) / step))
        partial = so_far / seen_part if seen_part > 0 else None
        f = forecast(hist, start=start + step * first, step=step, horizon=horizon,
                     methods=fr.methods, partial=partial)  # fmt: skip
        steps = list(f.steps)
        # what each month has spent is what was spent, the ended workloads' spend included
        spent = dict(s.values)
        periods = self._periods(f, steps, spent, fr, max(0.0, spent.get(current, 0.0)))
        return ScopeForecast(key, f, steps, periods, adjustments, sum(hist) + so_far)

    def _periods(self, f: Forecast, steps: list[Interval], values: dict[int, float],
                 fr: _Frame, so_far: float) -> list[PeriodTotal]:  # fmt: skip
        """Each month from the one holding `origin` to the horizon's end: what it has spent
        and the forecast of the rest (the step in progress counted for what is left of it;
        the interval of a later month is that of the total up to its end)."""
        start, origin, now, end, step = fr.start, fr.origin, fr.now, fr.end, fr.step
        part = (now - origin) / step
        out = []
        p = month_start(origin)
        while p < end:
            q = next_month(p)
            a = max(0, math.ceil((p - origin) / step))
            b = min(len(steps), math.ceil((min(q, end) - origin) / step))
            actual = 0.0
            if p <= origin:
                i0 = int((p - start) / step)
                actual = sum(max(0.0, values.get(i, 0.0)) for i in range(max(0, i0),
                             int((origin - start) / step))) + so_far  # fmt: skip
            mean = sum(steps[k].mean * (1 - part if k == 0 else 1.0) for k in range(a, b))
            width = f.total(b)
            lo80, hi80 = width.mean - width.low80, width.high80 - width.mean
            lo95, hi95 = width.mean - width.low95, width.high95 - width.mean
            m = actual + mean
            out.append(PeriodTotal(p, q, actual, Interval(
                m, max(actual, m - lo80), m + hi80, max(actual, m - lo95), m + hi95),
                end >= q))  # fmt: skip
            p = q
        return out

    def _commitments(self, scopes: list[ScopeForecast], dims: tuple[str, ...], fr: _Frame,
                     notes: list[str], *, into_total: bool = False) -> None:  # fmt: skip
        """Each committed purchase added once: its fee per step from its start (less the
        on-demand spend it replaces, never below nothing), to the scope it names, or to a
        row of its own where no scope matches."""
        origin, now, end, step = fr.origin, fr.now, fr.end, fr.step
        for c in self.ctx.settings.forecast.commitments:
            begin = datetime(c.start.year, c.start.month, c.start.day, tzinfo=UTC)
            stop = (datetime(c.end.year, c.end.month, c.end.day, tzinfo=UTC) if c.end
                    else datetime.max.replace(tzinfo=UTC))  # fmt: skip
            if begin >= end or stop <= origin:
                continue  # not in the horizon: no row of its own for nothing
            target = None
            scope = {normalise_dimension(d): v for d, v in c.scope.items()}
            if into_total:
                target = scopes[0]
            else:
                # the scope the commitment lies in: it must name every dimension of `by`
                # (one naming fewer spans several scopes, and gets a row of its own)
                for s in scopes:
                    if all(d in scope and s.key.get(d) == scope[d] for d in dims):
                        target = s
                        break
            if target is None:
                key = {d: scope.get(d, f"(commitment {c.name})") for d in dims}
                empty = _Series()
                target = self._scope(key, empty, fr, notes)
                scopes.append(target)
            per_step = float(c.monthly_fee) * 12 / 365 * (step / timedelta(days=1))
            replaces = float(c.replaces_hourly) * (step / timedelta(hours=1))
            extra = []
            for k, s in enumerate(target.steps):
                t = target.forecast.at(k)
                d = 0.0
                if begin <= t < stop:
                    d = per_step - min(replaces, s.mean)
                extra.append(d)
                target.steps[k] = s.shifted(d)
            if any(extra):
                target.adjustments.append({
                    "kind": "commitment", "name": c.name, "start": c.start.isoformat(),
                    "end": c.end.isoformat() if c.end else None,
                    "monthly_fee": _money(c.monthly_fee),
                    "replaces_hourly": _money(c.replaces_hourly),
                })  # fmt: skip
                for p in target.periods:
                    a = max(0, math.ceil((p.start - origin) / step))
                    b = min(len(extra), math.ceil((min(p.end, end) - origin) / step))
                    part = (now - origin) / step
                    add = sum(extra[k] * (1 - part if k == 0 else 1.0) for k in range(a, b))
                    p.total = p.total.shifted(add)

    # -- the month-end backtest -----------------------------------------------------------
    def backtest(self, *, by: Sequence[str] = ("team",), history: str = "400d",
                 at: datetime | None = None) -> dict[str, Any]:  # fmt: skip
        """For each scope, the month-end total forecast 7, 14 and 21 days into every
        complete month of the store's history, against the actual and the run-rate."""
        back = parse_duration(history, what="--history")
        if back < timedelta(days=28):  # shorter than any month: none to backtest
            raise UsageError(f"a history of at least 28d (a whole month), not {history!r}",
                             where="--history")  # fmt: skip
        now, data_start = self._now(at)
        step = timedelta(days=1)
        origin = align_down(now, step)
        # from the first whole day of data (a part-day is no day's spend)
        start = max(align_down(origin - back, step), align_down(data_start, step))
        if start < data_start:
            start += step
        dims = _dimensions(by)
        out: dict[str, Any] = {
            "from": iso_z(start), "to": iso_z(origin), "by": list(dims),
            "checkpoints": list(CHECKPOINTS), "scopes": [], "notes": [],
        }  # fmt: skip
        n = int((origin - start) / step)
        series = self._series(dims, start, now, step) if n > 0 else {}
        merged: dict[int, float] = defaultdict(float)
        all_cases = []
        day0 = date(start.year, start.month, start.day)

        def periods(values: list[float]) -> list[tuple[int, int]]:
            """The months whose first week holds the scope's first spend, or follows it
            (a scope that began later in a month has no month-end to miss there)."""
            seen = next((i for i in range(n) if values[i] > 0), None)
            return [(a, b) for a, b in months(day0, n) if seen is not None and seen < a + 7]

        for key, s in sorted(series.items()):
            for i, v in s.values.items():
                merged[i] += v
            values = [max(0.0, s.values.get(i, 0.0)) for i in range(n)]
            cases = period_backtest(values, start=start, step=step, periods=periods(values),
                                    checkpoints=CHECKPOINTS)  # fmt: skip
            all_cases += cases
            out["scopes"].append({"key": dict(key), **summarise(cases)})
        total = [max(0.0, merged.get(i, 0.0)) for i in range(n)]
        cases = period_backtest(total, start=start, step=step, periods=periods(total),
                                checkpoints=CHECKPOINTS)  # fmt: skip
        out["total"] = summarise(cases)
        out["pooled"] = summarise(all_cases)
        if not periods(total):
            out["notes"].append(
                f"the data ({iso_z(data_start)} to {iso_z(now)}) hold no complete "
                "calendar month: the month-end backtest needs one")  # fmt: skip
        return out

    # -- /metrics -------------------------------------------------------------------------
    def projection_series(self, by: Sequence[str]) -> list[tuple[dict[str, str], float, float]]:
        """This month's projected total per scope and its 95 % upper end
        (`ai_finops_monthly_cost_projection`): (labels, mean, high95)."""
        result = self.forecast(by=by, period_end=True)
        cur = self.ctx.settings.currency
        return [({**s.key, "currency": cur}, round(s.periods[0].total.mean, 6),
                 round(s.periods[0].total.high95, 6))
                for s in result.scopes if s.periods]  # fmt: skip


def _dimensions(by: Sequence[str]) -> tuple[str, ...]:
    """`--by` as the cost engine's column names ('gpu-model', ' Team ' -> 'gpu_model',
    'team'): the scopes' keys are read back under these names."""
    return tuple(normalise_dimension(d) for d in by if d.strip())
