"""Forecasts of a spend series (one value per day or per hour), with the method chosen per
series by a rolling-origin backtest on the series' own history, and intervals for totals
measured by that same backtest.

The candidates are statsforecast's seasonal naive, AutoETS and AutoARIMA (season: a week of
days, a day of hours) and the run-rate with weekday seasonality. Each is fitted once on the
history up to the first origin and then applied, with those parameters, at every later
origin (`forward`): the cumulative error of its forecast over the next steps is recorded at
each origin. The method whose total of the horizon was least wrong (the mean absolute
cumulative error at the farthest step the origins measured) wins, is refitted on the whole
series and forecasts the horizon.

Intervals: the total of the first k forecast steps has an 80 % and a 95 % interval whose
half-widths are the quantiles of the chosen method's absolute cumulative errors at k over
the origins (a split-conformal bound: the ceil((m+1)q)-th of m errors, which needs 8
errors for 80 % and 19 for 95 %); past the farthest step with that many, the half-width
grows linearly. The per-step intervals are the same from per-step errors. No interval is
narrower than the model's own (per step; summed for totals, as if the steps' errors moved
together), which is all there is with fewer than `MIN_ORIGINS` origins. So an interval is
as wide as the method was wrong on this series, or as its model believes, whichever is
wider.

With two seasons of history or less (14 days, 48 hours) the forecast is the run-rate with
weekday seasonality of budgets (`run_rate`), and says so.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

Z80, Z95 = 1.2816, 1.96
LEVELS = (80, 95)
METHODS = ("seasonal-naive", "ets", "arima", "run-rate")
MIN_ORIGINS = 8  # origins needed before an error quantile is trusted at a step
BACKTEST_ORIGINS = 42  # at most this many origins (the most recent)
BASE_STEPS = 14  # the run-rate's base: the last two weeks (of days)


@dataclass(frozen=True)
class Interval:
    mean: float
    low80: float
    high80: float
    low95: float
    high95: float

    def shifted(self, by: float) -> Interval:
        return Interval(self.mean + by, self.low80 + by, self.high80 + by,
                        self.low95 + by, self.high95 + by)  # fmt: skip

    def holds(self, actual: float, level: int) -> bool:
        low, high = (self.low80, self.high80) if level == 80 else (self.low95, self.high95)
        return low - 1e-9 <= actual <= high + 1e-9


@dataclass(frozen=True)
class Forecast:
    """`steps` forecasts from `start` (one per `step`), and the totals of the first k."""

    method: str
    start: datetime
    step: timedelta
    history: int  # points the forecast rests on
    steps: tuple[Interval, ...]
    totals: tuple[Interval, ...]  # totals[k-1]: the sum of the first k steps
    note: str | None = None  # why the method is what it is (a fallback), or None
    scores: dict[str, float] = field(default_factory=dict)  # backtest error per candidate
    origins: int = 0  # how many origins the backtest used

    def total(self, k: int) -> Interval:
        """The sum of the first k steps (k = 0: nothing)."""
        if k <= 0:
            return Interval(0.0, 0.0, 0.0, 0.0, 0.0)
        return self.totals[min(k, len(self.totals)) - 1]

    def at(self, k: int) -> datetime:
        return self.start + self.step * k


def season_of(step: timedelta) -> int:
    """A week of days, a day of hours (anything else: no season)."""
    if step == timedelta(days=1):
        return 7
    if step == timedelta(hours=1):
        return 24
    return 1


def min_history(step: timedelta) -> int:
    """Two seasons: 14 days, 48 hours."""
    return 2 * max(season_of(step), 7)


# -- the run-rate with weekday seasonality ------------------------------------------------
def _weekday_factors(values: Sequence[float], start: datetime, step: timedelta) -> list[float]:
    """Each weekday's mean over the series' mean, for a daily series of two weeks or more
    (1 for a weekday with fewer than two days, and for any other series)."""
    factor = [1.0] * 7
    if step != timedelta(days=1) or len(values) < 14:
        return factor
    overall = statistics.fmean(values)
    if overall <= 0:
        return factor
    for wd in range(7):
        vs = [v for i, v in enumerate(values) if (start + step * i).weekday() == wd]
        if len(vs) >= 2:
            factor[wd] = statistics.fmean(vs) / overall
    return factor


def run_rate(
    values: Sequence[float], start: datetime, step: timedelta, horizon: int,
    *, partial: float | None = None,
) -> Forecast:  # fmt: skip
    """The base rate is the mean of the last 14 steps with their weekday factor taken out;
    its spread their standard deviation. Step k's mean is the base times its weekday's
    factor; a total's variance adds each step's spread and the base's own uncertainty
    (normal quantiles). `partial`: where the series is empty, the rate of a part-step so
    far (the hours of today), with a spread as large as itself."""
    season = _weekday_factors(values, start, step)

    def fac(i: int) -> float:
        return season[(start + step * i).weekday()] if step == timedelta(days=1) else 1.0

    recent = [(i, v) for i, v in enumerate(values) if i >= len(values) - BASE_STEPS]
    plain = [v / fac(i) for i, v in recent if fac(i) > 0]
    if plain:
        base = statistics.fmean(plain)
        spread = statistics.stdev(plain) if len(plain) > 1 else base
        used = len(plain)
        seasonal = step == timedelta(days=1) and len(values) >= 14
        method = (f"run-rate with weekday seasonality ({len(values)} days)" if seasonal
                  else f"run-rate ({len(values)} {_unit(step)})")  # fmt: skip
    else:
        base = partial or 0.0
        spread, used = base, 1
        method = "run-rate of today's hours"
    n = len(values)
    f = [fac(n + k) for k in range(horizon)]
    steps = tuple(_normal(base * f[k], f[k] * spread) for k in range(horizon))
    totals = []
    mean = var = lin = 0.0
    for k in range(horizon):
        mean += base * f[k]
        var += (f[k] * spread) ** 2
        lin += f[k] * spread
        totals.append(_normal(mean, math.sqrt(var + lin**2 / used)))
    return Forecast(method, start + step * n, step, n, steps, tuple(totals))


def _unit(step: timedelta) -> str:
    return (
        "days" if step == timedelta(days=1) else "hours" if step == timedelta(hours=1) else "steps"
    )


def _normal(mean: float, sd: float) -> Interval:
    return Interval(mean, mean - Z80 * sd, mean + Z80 * sd, mean - Z95 * sd, mean + Z95 * sd)


# -- the library's models -----------------------------------------------------------------
class _Model:
    """A candidate: fit on a history, then forecast h steps after any longer history with
    the fitted parameters (`forward`)."""

    def __init__(self, name: str, season: int):
        self.name, self.season = name, season
        self.model: Any = None

    def _new(self) -> Any:
        from statsforecast.models import AutoARIMA, AutoETS, SeasonalNaive

        if self.name == "seasonal-naive":
            return SeasonalNaive(season_length=self.season)
        if self.name == "ets":
            return AutoETS(season_length=self.season)
        # a restricted search: a tenth of the default's time, within a few % of its error
        return AutoARIMA(season_length=self.season, max_p=2, max_q=2, max_P=1, max_Q=1,
                         approximation=True)  # fmt: skip

    def fit(self, y: Sequence[float]) -> None:
        import numpy as np

        self.model = self._new()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(np.asarray(y, dtype=float))

    def forward(self, y: Sequence[float], h: int) -> list[float]:
        return self.forward_levels(y, h, ())[0]

    def forward_levels(
        self, y: Sequence[float], h: int, levels: Sequence[int] = LEVELS
    ) -> tuple[list[float], list[tuple[float, float]]]:
        """The mean of h steps, and the model's own 80 % and 95 % half-widths per step."""
        import numpy as np

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {"level": list(levels)} if levels else {}
            out = self.model.forward(y=np.asarray(y, dtype=float), h=h, **kw)
        mean = [float(v) for v in out["mean"]]
        if not levels:
            return mean, []
        widths = [(_finite(float(out["hi-80"][k]) - mean[k]),
                   _finite(float(out["hi-95"][k]) - mean[k])) for k in range(h)]  # fmt: skip
        return mean, widths


def _finite(x: float) -> float:
    return x if math.isfinite(x) and x > 0 else 0.0


def _run_rate_means(
    start: datetime, step: timedelta
) -> Callable[[Sequence[float], int], list[float]]:
    def means(y: Sequence[float], h: int) -> list[float]:
        return [s.mean for s in run_rate(y, start, step, h).steps]

    return means


@dataclass
class _Errors:
    """One candidate's backtest: per origin, the per-step and cumulative errors
    (actual − forecast) over the steps the history still holds after it."""

    steps: list[list[float]] = field(default_factory=list)
    cums: list[list[float]] = field(default_factory=list)

    def score(self) -> float:
        """How wrong the total of the horizon was: the mean absolute cumulative error at
        the farthest step, over the origins that measured that far (with fewer than 3 such
        origins, over every origin and step measured)."""
        far = max((len(row) for row in self.cums), default=0)
        ends = [abs(row[-1]) for row in self.cums if row and len(row) == far]
        if len(ends) >= 3:
            return statistics.fmean(ends)
        flat = [abs(e) for row in self.cums for e in row]
        return statistics.fmean(flat) if flat else math.inf


def forecast(
    values: Sequence[float],
    *,
    start: datetime,
    step: timedelta,
    horizon: int,
    methods: Sequence[str] | None = None,
    partial: float | None = None,
) -> Forecast:
    """Forecast `horizon` steps after `values` (one per `step` from `start`, no gaps: a
    step without spend is 0). The method is chosen by backtest among `methods` (all by
    default); too little history gives the run-rate, which says so."""
    values = [max(0.0, float(v)) for v in values]
    for v in values:
        if not math.isfinite(v):
            raise ValueError("a forecast's history must be finite numbers")
    horizon = max(1, horizon)
    n, need = len(values), min_history(step)
    if n <= need:  # two seasons and not one step more: nothing to backtest a model on
        f = run_rate(values, start, step, horizon, partial=partial)
        few = "fewer than" if n < need else "no more than"
        return _with(f, note=f"{n} {_unit(step)} of history, {few} {need}: "
                     "run-rate, not a model")  # fmt: skip
    chosen = [m for m in (methods or METHODS) if m in METHODS]
    season = season_of(step)
    reach = min(horizon, 5 * season if season > 1 else 28)  # the backtest's farthest step
    first = max(need, n - BACKTEST_ORIGINS)
    origins = list(range(first, n))
    errors: dict[str, _Errors] = {}
    models: dict[str, Callable[[Sequence[float], int], list[float]]] = {}
    for name in chosen:
        if name == "run-rate":
            models[name] = _run_rate_means(start, step)
        else:
            model = _Model(name, season)
            try:
                model.fit(values[:first])
            except Exception:  # a model that cannot fit this history is not a candidate
                continue
            models[name] = model.forward
        errors[name] = _backtest(models[name], values, origins, reach)
    scores = {name: e.score() for name, e in errors.items()}
    if not scores or min(scores.values()) == math.inf:
        scores["run-rate"] = math.inf  # nothing could be measured: the plain run-rate
    best = min(scores, key=lambda m: (scores[m], METHODS.index(m)))
    if best == "run-rate":
        plain = run_rate(values, start, step, horizon)
        point = [s.mean for s in plain.steps]
        own = [(s.high80 - s.mean, s.high95 - s.mean) for s in plain.steps]
    else:
        model = _Model(best, season)
        model.fit(values)
        point, own = model.forward_levels(values, horizon)
    point = [max(0.0, v) for v in point]
    steps, totals = _intervals(point, errors.get(best, _Errors()), own)
    return Forecast(_LABEL[best], start + step * n, step, n, steps, totals, None,
                    {m: round(s, 6) for m, s in scores.items()}, len(origins))  # fmt: skip


_LABEL = {
    "seasonal-naive": "seasonal naive",
    "ets": "AutoETS",
    "arima": "AutoARIMA",
    "run-rate": "run-rate with weekday seasonality",
}


def _with(f: Forecast, *, note: str) -> Forecast:
    return Forecast(f.method, f.start, f.step, f.history, f.steps, f.totals, note, f.scores,
                    f.origins)  # fmt: skip


def _backtest(
    predict: Callable[[Sequence[float], int], list[float]],
    values: Sequence[float],
    origins: Sequence[int],
    reach: int,
) -> _Errors:
    out = _Errors()
    n = len(values)
    for o in origins:
        h = min(reach, n - o)
        if h <= 0:
            continue
        try:
            pred = predict(values[:o], h)
        except Exception:
            return _Errors()  # scores infinite: not chosen
        row, cum, total = [], [], 0.0
        for j in range(h):
            e = values[o + j] - max(0.0, pred[j])
            row.append(e)
            total += e
            cum.append(total)
        out.steps.append(row)
        out.cums.append(cum)
    return out


def conformal(errors: Sequence[float], level: int) -> float:
    """The ceil((m+1)q)-th smallest of m absolute errors (the largest where that is past
    the end): a bound that holds with probability q for exchangeable errors."""
    ranked = sorted(abs(e) for e in errors)
    m = len(ranked)
    k = math.ceil((m + 1) * level / 100)
    return ranked[min(k, m) - 1]


def _widths(
    rows: Sequence[Sequence[float]], horizon: int, grow: bool,
    own: Sequence[tuple[float, float]],
) -> list[tuple[float, float]]:  # fmt: skip
    """Per step k (1..horizon): the 80 % and 95 % half-widths from the errors at k; past
    the last step with MIN_ORIGINS errors, the last such width (per-step) or that width
    grown linearly (totals). Where not even the first step has MIN_ORIGINS errors (a short
    history), the model's own widths: per step, and for totals their sum (as if the steps'
    errors moved together, which is the wider bound)."""
    if len([row for row in rows if row]) < MIN_ORIGINS:
        if not grow:
            return list(own)
        summed, w80, w95 = [], 0.0, 0.0
        for a, b in own:
            w80, w95 = w80 + a, w95 + b
            summed.append((w80, w95))
        return summed
    by80 = [w or 0.0 for w in _level_widths(rows, horizon, grow, 80)]
    by95 = _level_widths(rows, horizon, grow, 95)
    # no step with the 19 errors a 95 % quantile needs: the normal ratio to the 80 % width
    out = [(a, max(a, a * Z95 / Z80 if b is None else b)) for a, b in zip(by80, by95, strict=True)]
    # never narrower than the model's own widths (summed, for totals)
    floor: list[tuple[float, float]] = []
    s80 = s95 = 0.0
    for a, b in own:
        s80, s95 = (s80 + a, s95 + b) if grow else (a, b)
        floor.append((s80, s95))
    return [(max(a, c), max(b, d)) for (a, b), (c, d) in zip(out, floor, strict=False)]


def _level_widths(
    rows: Sequence[Sequence[float]], horizon: int, grow: bool, level: int
) -> list[float | None]:
    """One level's half-widths. The ceil((m+1)q)-th of m errors exists only where
    (m+1)q <= m: 8 errors for 80 % (MIN_ORIGINS), 19 for 95 %; past the last step with
    that many, the last width (per-step) or that width grown linearly (totals)."""
    need = max(MIN_ORIGINS, -(-level // (100 - level)))
    out: list[float | None] = []
    last: float | None = None
    last_k = 0
    for k in range(horizon):
        at = [row[k] for row in rows if len(row) > k]
        if len(at) >= need:
            last, last_k = conformal(at, level), k + 1
            out.append(last)
        elif last is not None and grow:
            out.append(last * (k + 1) / last_k)
        else:
            out.append(last)
    return out


def _intervals(
    point: Sequence[float], errors: _Errors, own: Sequence[tuple[float, float]]
) -> tuple[tuple[Interval, ...], tuple[Interval, ...]]:
    h = len(point)
    per = _widths(errors.steps, h, False, own)
    cum = _widths(errors.cums, h, True, own)
    steps, totals, running = [], [], 0.0
    for k, mean in enumerate(point):
        w80, w95 = per[k]
        steps.append(Interval(mean, max(0.0, mean - w80), mean + w80, max(0.0, mean - w95),
                              mean + w95))  # fmt: skip
        running += mean
        w80, w95 = cum[k]
        totals.append(Interval(running, max(0.0, running - w80), running + w80,
                               max(0.0, running - w95), running + w95))  # fmt: skip
    return tuple(steps), tuple(totals)


# -- the month-end backtest ---------------------------------------------------------------
@dataclass(frozen=True)
class BacktestCase:
    """A forecast of one period's total made `checkpoint` steps into it."""

    period: datetime  # the period's first step
    checkpoint: int
    actual: float
    forecast: Interval
    baseline: float  # the run-rate: so far / steps so far × steps in the period
    method: str

    @property
    def ape(self) -> float:
        return _ape(self.forecast.mean, self.actual)

    @property
    def baseline_ape(self) -> float:
        return _ape(self.baseline, self.actual)


def _ape(forecast: float, actual: float) -> float:
    return abs(forecast - actual) / abs(actual) if actual else (0.0 if not forecast else 1.0)


def _sape(forecast: float, actual: float) -> float:
    denominator = (abs(forecast) + abs(actual)) / 2
    return abs(forecast - actual) / denominator if denominator else 0.0


def months(first: date, n: int) -> list[tuple[int, int]]:
    """The complete calendar months of a daily series of n days from `first`, as
    (index of the 1st, index after the last day)."""
    out = []
    d, i = first, 0
    while i < n:
        nxt = date(d.year + d.month // 12, d.month % 12 + 1, 1)
        end = i + (nxt - d).days
        if d.day == 1 and end <= n:
            out.append((i, end))
        i, d = end, nxt
    return out


def period_backtest(
    values: Sequence[float],
    *,
    start: datetime,
    step: timedelta,
    periods: Sequence[tuple[int, int]],
    checkpoints: Sequence[int],
    methods: Sequence[str] | None = None,
) -> list[BacktestCase]:
    """For each complete period (first index, end index) and checkpoint c: forecast the
    period's total from the history up to c steps into it (spend so far + the forecast of
    the rest), beside the run-rate of the period so far."""
    cases = []
    for a, b in periods:
        for c in checkpoints:
            if not 0 < c < b - a:
                continue
            history = values[: a + c]
            so_far = sum(values[a : a + c])
            f = forecast(history, start=start, step=step, horizon=b - a - c, methods=methods)
            predicted = f.total(b - a - c).shifted(so_far)
            cases.append(BacktestCase(
                start + step * a, c, sum(values[a:b]), predicted, so_far / c * (b - a),
                f.method,
            ))  # fmt: skip
    return cases


def summarise(cases: Sequence[BacktestCase]) -> dict[str, Any]:
    """MAPE and sMAPE (in %) of the forecast and of the run-rate at each checkpoint, and the
    share of actuals inside the 80 % and 95 % intervals."""
    out: dict[str, Any] = {"cases": len(cases), "checkpoints": {}}
    for c in sorted({case.checkpoint for case in cases}):
        at = [case for case in cases if case.checkpoint == c]
        out["checkpoints"][c] = {
            "cases": len(at),
            "mape": _pct(statistics.fmean(x.ape for x in at)),
            "smape": _pct(statistics.fmean(_sape(x.forecast.mean, x.actual) for x in at)),
            "baseline_mape": _pct(statistics.fmean(x.baseline_ape for x in at)),
            "baseline_smape": _pct(statistics.fmean(_sape(x.baseline, x.actual) for x in at)),
        }
    if cases:
        out["coverage80"] = _pct(sum(x.forecast.holds(x.actual, 80) for x in cases) / len(cases))
        out["coverage95"] = _pct(sum(x.forecast.holds(x.actual, 95) for x in cases) / len(cases))
    methods: dict[str, int] = {}
    for x in cases:
        methods[x.method] = methods.get(x.method, 0) + 1
    out["methods"] = dict(sorted(methods.items()))
    return out


def _pct(x: float) -> float:
    return round(100 * x, 2)
