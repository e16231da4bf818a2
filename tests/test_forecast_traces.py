"""The forecast engine (core/forecast.py): unit cases whose answers are worked by hand, then
backtests on a small slice of each real trace (issue 16) with their error and coverage
figures held to bounds. The full figures are bench/forecast.py's, in docs/forecasting.md."""

from __future__ import annotations

import csv
import math
import statistics
from datetime import UTC, date, datetime, timedelta

import pytest
from bench import traces

from aifinops.core.forecast import (
    BacktestCase,
    Interval,
    conformal,
    forecast,
    months,
    period_backtest,
    summarise,
)
from tests.conftest import shared_data

DAY = timedelta(days=1)
MONDAY = datetime(2026, 11, 2, tzinfo=UTC)


# -- the engine on series with known answers ------------------------------------------------
def test_a_constant_series_is_forecast_exactly_with_no_width() -> None:
    """Every candidate forecasts a constant exactly, so every backtest error is 0: the
    tie goes to the first candidate (seasonal naive), the total of k steps is c × k and
    its intervals have no width (they are as wide as the method was wrong: never)."""
    f = forecast([5.0] * 28, start=MONDAY, step=DAY, horizon=10)
    assert f.method == "seasonal naive"
    assert f.note is None
    assert max(f.scores.values()) == pytest.approx(0.0, abs=1e-6)
    assert f.origins == 28 - 14  # every origin after the two weeks a model needs
    for k in (1, 7, 10):
        total = f.total(k)
        assert total.mean == pytest.approx(5.0 * k)
        assert total.low95 == pytest.approx(total.high95)
        assert total.low80 == pytest.approx(5.0 * k)
    assert f.total(0) == Interval(0.0, 0.0, 0.0, 0.0, 0.0)
    assert f.total(99) == f.total(10)  # past the horizon: the horizon's total


def test_a_pure_weekly_pattern_picks_seasonal_naive_and_is_exact() -> None:
    """Five weeks of the same week: seasonal naive repeats it, so its backtest error is 0
    and no other candidate does better. 35 days from a Monday: the next day is a Monday
    again, so the next 10 days are 10 20 30 40 50 5 5 10 20 30 (sum 220)."""
    week = [10.0, 20.0, 30.0, 40.0, 50.0, 5.0, 5.0]
    f = forecast(week * 5, start=MONDAY, step=DAY, horizon=10)
    assert f.method == "seasonal naive"
    assert f.scores["seasonal-naive"] == pytest.approx(0.0, abs=1e-9)
    assert [s.mean for s in f.steps] == pytest.approx(week + week[:3])
    assert f.total(7).mean == pytest.approx(160.0)
    assert f.total(10).mean == pytest.approx(220.0)
    assert f.total(10).high95 - f.total(10).low95 == pytest.approx(0.0, abs=1e-6)


def test_under_two_weeks_is_the_run_rate_and_says_so() -> None:
    """10 days 1..10: no weekday factors under 14 days, so the rate is their mean 5.5 and
    its spread their standard deviation s; a 1-step total has the variance s² + s²/10 (the
    step's own spread and the base's uncertainty over 10 days), its 95 % half-width 1.96 ×
    that root."""
    values = [float(v) for v in range(1, 11)]
    f = forecast(values, start=MONDAY, step=DAY, horizon=3)
    assert f.method.startswith("run-rate")
    assert f.note == "10 days of history, fewer than 14: run-rate, not a model"
    assert f.total(3).mean == pytest.approx(16.5)
    s = statistics.stdev(values)
    assert f.total(1).high95 - 5.5 == pytest.approx(1.96 * math.sqrt(s**2 + s**2 / 10))


def test_months_are_the_complete_calendar_months_only() -> None:
    # from 15 January: February is days 17..44; March would end on day 76, past 60
    assert months(date(2023, 1, 15), 60) == [(17, 45)]
    assert months(date(2024, 2, 1), 29) == [(0, 29)]  # a leap February, whole
    assert months(date(2024, 2, 1), 28) == []  # one day short
    assert months(date(2023, 12, 1), 62) == [(0, 31), (31, 62)]  # over the year's end


def test_conformal_takes_the_ceil_m_plus_1_q_th_error() -> None:
    errors = [-3.0, 7.0, 1.0, -10.0, 5.0, 2.0, -8.0, 4.0, 6.0, 9.0]  # |e|: 1..10
    assert conformal(errors, 80) == 9.0  # ceil(11 × 0.8) = 9th smallest
    assert conformal(errors, 95) == 10.0  # ceil(11 × 0.95) = 11 > 10: the largest
    assert conformal([2.0, -1.0, 3.0, 4.0], 80) == 4.0  # ceil(5 × 0.8) = 4th
    assert conformal([2.0, -1.0, 3.0, 4.0, 0.5, 6.0, 7.0, 8.0, 9.0], 80) == 8.0  # ceil(8.0)


def test_summarise_on_two_cases_by_hand() -> None:
    """A: actual 100, forecast 110 (80 %: 105..115, 95 %: 95..125), run-rate 90.
    B: actual 200, forecast 180 (80 %: 170..190, 95 %: 150..210), run-rate 250.
    MAPE (10 + 10) / 2 = 10; sMAPE (10/105 + 20/190) / 2 = 10.03; the run-rate's MAPE
    (10 + 25) / 2 = 17.5, sMAPE (10/95 + 50/225) / 2 = 16.37. Neither actual is inside
    its 80 % interval, both inside the 95 %."""
    at = datetime(2026, 11, 1, tzinfo=UTC)
    cases = [
        BacktestCase(at, 14, 100.0, Interval(110.0, 105.0, 115.0, 95.0, 125.0), 90.0, "AutoETS"),
        BacktestCase(at, 14, 200.0, Interval(180.0, 170.0, 190.0, 150.0, 210.0), 250.0, "AutoETS"),
    ]
    out = summarise(cases)
    assert out["checkpoints"][14] == {
        "cases": 2, "mape": 10.0, "smape": 10.03, "baseline_mape": 17.5, "baseline_smape": 16.37,
    }  # fmt: skip
    assert (out["coverage80"], out["coverage95"]) == (0.0, 100.0)
    assert out["methods"] == {"AutoETS": 2}


def test_period_backtest_adds_the_spend_so_far() -> None:
    """A constant 24 a day over 2023-01-01..2023-02-28: February's total is 28 × 24 = 672
    whatever the checkpoint, and the forecast and the run-rate both hit it."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    cases = period_backtest([24.0] * 59, start=start, step=DAY,
                            periods=months(start.date(), 59), checkpoints=(7, 14))  # fmt: skip
    assert [(c.period.date(), c.checkpoint) for c in cases] == [
        (date(2023, 1, 1), 7), (date(2023, 1, 1), 14), (date(2023, 2, 1), 7),
        (date(2023, 2, 1), 14),
    ]  # fmt: skip
    assert [c.actual for c in cases] == [744.0, 744.0, 672.0, 672.0]
    for c in cases:
        assert c.forecast.mean == pytest.approx(c.actual)
        assert c.baseline == pytest.approx(c.actual)


# -- the loaders, against sums from the raw files ------------------------------------------
def test_helios_series_are_the_quota_times_24() -> None:
    path = shared_data(traces.HELIOS)
    series = {s.scope: s for s in traces.helios(path)}
    assert "vcIya" not in series  # zero on every day: left out
    assert len(series) == 25  # 24 clusters with a quota some day, and the total
    total = series["total"]
    assert total.values[0] == 968 * 24  # the file's first row: total 968 GPUs
    assert len(total.values) == 181
    assert [b - a for a, b in total.periods] == [30, 31, 30, 31, 31]  # April .. August
    clusters = [s for name, s in series.items() if name != "total"]
    for i in (0, 90, 180):
        assert sum(s.values[i] for s in clusters) == total.values[i]


def test_v2023_gpu_hours_sum_to_the_pods_in_the_window() -> None:
    """The daily GPU-hours over the window's complete days (116..148) sum to each pod's
    GPUs × its time inside the window, clipped once per pod (not day by day)."""
    path = shared_data(traces.V2023)
    first, end = traces.v2023_window(path)
    assert (first, end) == (116, 149)
    lo, hi = first * 86_400, end * 86_400
    expected = 0.0
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["scheduled_time"]:
                held = min(hi, int(r["deletion_time"])) - max(lo, int(r["scheduled_time"]))
                expected += int(r["num_gpu"]) * int(r["gpu_milli"]) / 1000 * max(0, held) / 3600
    series = {s.scope: s for s in traces.v2023(path)}
    assert sum(series["total"].values) == pytest.approx(expected)
    by_qos = sum(sum(s.values) for name, s in series.items() if name != "total")
    assert by_qos == pytest.approx(expected)
    assert series["total"].start.date() == date(2023, 1, 27)  # trace day 116
    assert series["total"].periods == ((5, 33),)  # February 2023


def test_azure_tokens_per_complete_minute() -> None:
    """conv: requests from 18:15:46 to 19:14:08, so the complete minutes are 18:16 ..
    19:13 (58); their tokens sum to the rows whose time falls in them."""
    path = shared_data(traces.AZURE["conv"])
    start, context, generated = traces.azure_minutes(path)
    assert start == datetime(2023, 11, 16, 18, 16, tzinfo=UTC)
    assert len(context) == len(generated) == 58
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if "18:16" <= r["TIMESTAMP"][11:16] <= "19:13"]
    assert sum(context) == sum(float(r["ContextTokens"]) for r in rows)
    assert sum(generated) == sum(float(r["GeneratedTokens"]) for r in rows)
    # 20-minute windows every 5 minutes past the hour, wholly inside: 18:20 .. 18:50
    assert traces.azure_periods(start, 58) == tuple((a, a + 20) for a in range(4, 35, 5))


# -- backtests on a slice of each trace -----------------------------------------------------
def _backtest(series: traces.Series) -> dict:
    cases = period_backtest(series.values, start=series.start, step=series.step,
                            periods=series.periods, checkpoints=series.checkpoints)  # fmt: skip
    return summarise(cases)


def test_helios_total_beats_the_run_rate_at_day_14() -> None:
    """The Venus total over April .. August (15 cases). Its quota is a step function that
    changes 4 times inside these months (7 July; 16, 21 and 25 August). April .. June are
    constant: every method and the run-rate are exact there (9 cases, tied, inside any
    interval). After a change inside the month, carrying the new level on beats the
    month's mean so far, so day-14 MAPE ≤ the run-rate's (measured 0.82 vs 1.25 %). A
    change after the checkpoint (or on its day: July at day 7, the one miss measured) is
    news to any method; the bound lets half of the 6 cases of July and August miss their
    95 % interval: coverage95 ≥ 80 % (12 of 15)."""
    series = next(s for s in traces.helios(shared_data(traces.HELIOS)) if s.scope == "total")
    out = _backtest(series)
    at = out["checkpoints"][14]
    assert out["cases"] == 15
    assert at["mape"] <= at["baseline_mape"]
    assert at["mape"] < 2.0  # a month's total within 2 % at day 14 (measured 0.82)
    assert out["coverage95"] >= 80.0


def test_v2023_total_stays_near_the_run_rate() -> None:
    """The one complete month of v2023 (February on our calendar, 5 days of history before
    it), the total: 3 cases, too few to hold a coverage to (docs/forecasting.md gives it
    pooled over the qos scopes). The errors: each checkpoint within 25 % (measured 9.3 /
    16.9 / 3.7; the run-rate's 9.8 / 14.5 / 5.1: a guard against a forecast gone wrong),
    and at day 21 no worse than the run-rate (3.7 vs 5.1 %). At day 14 the run-rate is the
    better one here (14.5 vs 16.9 %): not asserted either way."""
    series = traces.v2023(shared_data(traces.V2023))[0]
    assert series.scope == "total"
    out = _backtest(series)
    assert out["cases"] == 3
    assert all(at["mape"] < 25.0 for at in out["checkpoints"].values())
    assert out["checkpoints"][21]["mape"] <= out["checkpoints"][21]["baseline_mape"]


def test_azure_conv_context_per_20_minutes() -> None:
    """The conv trace's context tokens per minute, 7 windows of 20 minutes × 3 checkpoints
    (21 cases). Halfway in (10 minutes) the forecast's MAPE is below the run-rate's
    (measured 13.8 vs 14.7 %). The intervals under-cover: 12 of the 21 actuals inside the
    95 % intervals (57 %; the target is 90-100, docs/forecasting.md says why), so the
    bounds here guard against the worst regression, not for the target: every interval
    that is not exact has a width (the engine once gave zero-width intervals to histories
    too short to measure 8 origins), and at least half the actuals are inside."""
    series = next(s for s in traces.azure({"conv": shared_data(traces.AZURE["conv"])})
                  if s.scope == "conv/context")  # fmt: skip
    cases = period_backtest(series.values, start=series.start, step=series.step,
                            periods=series.periods, checkpoints=series.checkpoints)  # fmt: skip
    out = summarise(cases)
    at = out["checkpoints"][10]
    assert out["cases"] == 21
    assert at["mape"] < at["baseline_mape"]
    for c in cases:
        assert c.forecast.high95 - c.forecast.low95 > 0 or c.forecast.mean == c.actual
    assert out["coverage95"] >= 50.0
