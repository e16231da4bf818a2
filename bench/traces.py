"""Real traces turned into spend-like series for the forecast backtest (bench/forecast.py
and tests/test_forecast_traces.py). Pure Python and csv: the traces are research-use
only, so neither they nor these loaders ship in src/.

Three traces, each a list of `Series` (one per scope) with the periods whose totals the
backtest forecasts and the checkpoints (steps into a period) it forecasts them from:

1. Helios Venus (SenseTime, 2020-04-01 .. 2020-09-28, 181 days): each virtual cluster's GPU
   quota per day; a day's GPU-hours are the quota × 24. One series per cluster that is not
   zero throughout, and the total. Periods: the complete calendar months (April .. August).
2. Alibaba v2023 (openb_pod_list_default.csv): each pod holds num_gpu × gpu_milli / 1000
   GPUs from its scheduling to its deletion (`v2023_daily`); the series is the GPU-hours of
   each complete day of the trace's observation window. Per qos too.
3. Azure LLM inference, 2023-11-16 (code and conv): they span under an hour, so an hourly
   series would have one point. The series are the tokens (context, generated) of each
   complete minute; the periods are 20-minute windows, one starting every 5 minutes, and
   the checkpoints 25 / 50 / 75 % into them (5, 10, 15 minutes).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aifinops.core.forecast import months

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
SECONDS_PER_DAY = 86_400

HELIOS = "cluster-traces/extras/helios-venus/cluster_gpu_number.csv"
V2023 = "cluster-traces/v2023/csv/openb_pod_list_default.csv"
AZURE = {
    "code": "llm-traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv",
    "conv": "llm-traces/azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
}

# v2023 gives seconds from the trace's start and no date. Its complete days are trace days
# 116..148 (see `v2023_window`): 33 days, room for one calendar month. Day 0 = 2022-10-03
# (a Monday) puts trace day 121 on 2023-02-01, so February (28 days, 121..148) is that
# month, with 5 days before it, the most lead any month length allows. The weekday does not
# change any method: the weekday factors and the season-7 models work on position mod 7.
V2023_DAY0 = date(2022, 10, 3)

AZURE_PERIOD, AZURE_EVERY = 20, 5  # minutes: a window's length, and a new one every 5


@dataclass(frozen=True)
class Series:
    """One scope of one trace: `values` one per `step` from `start`, and what to backtest."""

    trace: str
    scope: str
    start: datetime
    step: timedelta
    values: tuple[float, ...]
    periods: tuple[tuple[int, int], ...]  # (first index, end index) of each period
    checkpoints: tuple[int, ...]  # steps into a period at which its total is forecast
    unit: str


# -- Helios Venus ---------------------------------------------------------------------------
def helios(path: Path) -> list[Series]:
    """One daily GPU-hours series per virtual cluster (zero throughout: left out) and the
    total column."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    first = date.fromisoformat(rows[0]["date"])
    days = [date.fromisoformat(r["date"]) for r in rows]
    if days != [first + DAY * i for i in range(len(days))]:
        raise ValueError(f"{path}: the dates are not one per day without gaps")
    periods = tuple(months(first, len(rows)))
    start = datetime.combine(first, datetime.min.time(), UTC)
    out = []
    for column in [c for c in rows[0] if c != "date"]:
        values = tuple(float(r[column]) * 24 for r in rows)
        if not any(values):
            continue
        out.append(Series("helios", column, start, DAY, values, periods, (7, 14, 21),
                          "GPU-hours"))  # fmt: skip
    # the total first: the scope a reader looks for
    out.sort(key=lambda s: (s.scope != "total", s.scope))
    return out


# -- Alibaba v2023 --------------------------------------------------------------------------
@dataclass(frozen=True)
class Pod:
    qos: str
    gpus: float  # num_gpu × gpu_milli / 1000
    begin: int  # seconds from the trace's start: scheduled
    end: int  # deleted


def v2023_pods(path: Path) -> list[Pod]:
    """The pods that held a GPU share. A Pending pod has no scheduled_time: it never held a
    GPU, so it is left out; the others hold theirs from scheduled_time (not creation_time:
    the wait for a node holds nothing) to deletion_time. The 34 pods still Running at the
    end carry the trace's last second as deletion_time, so they are cut there."""
    out = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            gpus = int(r["num_gpu"]) * int(r["gpu_milli"]) / 1000
            if gpus <= 0 or not r["scheduled_time"]:
                continue
            out.append(Pod(r["qos"], gpus, int(r["scheduled_time"]), int(r["deletion_time"])))
    return out


def v2023_window(path: Path) -> tuple[int, int]:
    """The complete days (first, end) of the trace's observation window. The file lists the
    pods deleted at or after its window's start (its earliest deletion, day 115.3) and up to
    its end (its latest, day 149.3); a pod that ended before the window is absent, so a day
    before it would be undercounted. The complete days: 116 .. 148."""
    with path.open(newline="") as f:
        deleted = [int(r["deletion_time"]) for r in csv.DictReader(f) if r["deletion_time"]]
    return math.ceil(min(deleted) / SECONDS_PER_DAY), max(deleted) // SECONDS_PER_DAY


def v2023_daily(pods: Sequence[Pod], first: int, end: int) -> list[float]:
    """GPU-hours of each day first..end-1: each pod's GPUs × the hours of that day between
    its begin and its end."""
    hours = [0.0] * (end - first)
    for p in pods:
        days = range(max(first, p.begin // SECONDS_PER_DAY), min(end, p.end // SECONDS_PER_DAY + 1))
        for d in days:
            lo, hi = max(p.begin, d * SECONDS_PER_DAY), min(p.end, (d + 1) * SECONDS_PER_DAY)
            if hi > lo:
                hours[d - first] += p.gpus * (hi - lo) / 3600
    return hours


def v2023(path: Path) -> list[Series]:
    """The total and each qos (LS, BE, Burstable, Guaranteed) as daily GPU-hours."""
    pods = v2023_pods(path)
    first, end = v2023_window(path)
    day0 = V2023_DAY0 + DAY * first
    start = datetime.combine(day0, datetime.min.time(), UTC)
    periods = tuple(months(day0, end - first))
    scopes: dict[str, list[Pod]] = defaultdict(list)
    for p in pods:
        scopes[p.qos].append(p)
    out = [Series("v2023", "total", start, DAY, tuple(v2023_daily(pods, first, end)), periods,
                  (7, 14, 21), "GPU-hours")]  # fmt: skip
    for qos in sorted(scopes):
        values = tuple(v2023_daily(scopes[qos], first, end))
        if any(values):
            out.append(Series("v2023", f"qos={qos}", start, DAY, values, periods, (7, 14, 21),
                              "GPU-hours"))  # fmt: skip
    return out


# -- Azure LLM inference --------------------------------------------------------------------
def azure_minutes(path: Path) -> tuple[datetime, list[float], list[float]]:
    """The first complete minute and the context and generated tokens of each complete
    minute (the minutes of the first and the last request are partial: left out)."""
    context: dict[datetime, float] = defaultdict(float)
    generated: dict[datetime, float] = defaultdict(float)
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            # "2023-11-16 18:17:03.9799600": seven decimals, more than fromisoformat takes
            at = datetime.fromisoformat(r["TIMESTAMP"][:16]).replace(tzinfo=UTC)
            context[at] += float(r["ContextTokens"])
            generated[at] += float(r["GeneratedTokens"])
    first, last = min(context) + MINUTE, max(context)
    n = (last - first) // MINUTE
    keys = [first + MINUTE * i for i in range(n)]
    return first, [context.get(k, 0.0) for k in keys], [generated.get(k, 0.0) for k in keys]


def azure_periods(start: datetime, n: int) -> tuple[tuple[int, int], ...]:
    """The AZURE_PERIOD-minute windows that start on a multiple of AZURE_EVERY minutes past
    the hour and lie wholly inside the n minutes from `start`."""
    offset = -start.minute % AZURE_EVERY
    return tuple((a, a + AZURE_PERIOD) for a in range(offset, n - AZURE_PERIOD + 1, AZURE_EVERY))


def azure(paths: dict[str, Path]) -> list[Series]:
    """Per file (code, conv) and token kind (context, generated): tokens per minute."""
    out = []
    quarter = AZURE_PERIOD // 4
    for name, path in paths.items():
        start, context, generated = azure_minutes(path)
        periods = azure_periods(start, len(context))
        for kind, values in (("context", context), ("generated", generated)):
            out.append(Series("azure", f"{name}/{kind}", start, MINUTE, tuple(values), periods,
                              (quarter, 2 * quarter, 3 * quarter), "tokens"))  # fmt: skip
    return out


# each trace by name: its series from the shared data folder
TRACES: dict[str, Callable[[Path], list[Series]]] = {
    "helios": lambda root: helios(root / HELIOS),
    "v2023": lambda root: v2023(root / V2023),
    "azure": lambda root: azure({name: root / rel for name, rel in AZURE.items()}),
}
