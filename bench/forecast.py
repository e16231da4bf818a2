"""Forecast backtest on real traces (issue 16's backtest report): for every scope of each
trace, the period totals forecast at three checkpoints into the period
(`aifinops.core.forecast.period_backtest`), beside the run-rate of the period so far, in
the same run.

Per trace, a table: scope, cases, MAPE and sMAPE of the forecast at each checkpoint, the
run-rate's MAPE at the same points and the forecast's MAPE at the middle one as a multiple
of the run-rate's, the share of actuals inside the 80 % and 95 % intervals, the methods
chosen and the seconds; then the trace's cases pooled over its scopes, and the issue's
targets on them: coverage within 5 points of nominal, MAPE at the middle checkpoint (day
14 of a month; 10 minutes into a 20-minute period on Azure) below the run-rate's.

The traces (bench/traces.py): Helios Venus quotas by virtual cluster (5 months), Alibaba
v2023 pods as daily GPU-hours by qos (one month: the trace's window is 33 complete days),
Azure LLM inference tokens per minute (the trace spans under an hour: 20-minute periods at
25 / 50 / 75 %, no hourly series).

    python bench/forecast.py                         # all three
    python bench/forecast.py --trace helios --json /tmp/forecast.json
    python bench/forecast.py --data /path/to/shared/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from traces import AZURE, HELIOS, TRACES, V2023, Series

FILES = {"helios": [HELIOS], "v2023": [V2023], "azure": list(AZURE.values())}
TOLERANCE = 5.0  # points of coverage either side of nominal (the target)

SHORT = {"seasonal naive": "snaive", "AutoETS": "ets", "AutoARIMA": "arima",
         "run-rate with weekday seasonality": "rr"}  # fmt: skip


def short(method: str) -> str:
    """A method's short name; `rr*` for the run-rate a short history falls back to (its
    label says how many steps it rests on, the chosen run-rate's does not)."""
    return SHORT.get(method, "rr*" if method.startswith("run-rate") else method)


def backtest(series: Series) -> tuple[list[Any], dict[str, Any]]:
    """One scope's cases and their summary (with the seconds it took)."""
    from aifinops.core.forecast import period_backtest, summarise

    began = time.perf_counter()
    cases = period_backtest(series.values, start=series.start, step=series.step,
                            periods=series.periods, checkpoints=series.checkpoints)  # fmt: skip
    summary = summarise(cases)
    summary["exact"] = sum(map(exact, cases))
    summary["seconds"] = round(time.perf_counter() - began, 2)
    return cases, summary


def exact(case: Any) -> bool:
    """A case forecast exactly with a zero-width interval (a constant month of a quota):
    inside both intervals whatever the engine's interval rule, so it says nothing of it."""
    f = case.forecast
    return abs(f.mean - case.actual) <= 1e-9 * max(1.0, case.actual) and f.high95 - f.low95 <= 1e-9


def coverage(cases: Sequence[Any], level: int) -> float:
    return round(100 * sum(c.forecast.holds(c.actual, level) for c in cases) / len(cases), 2)


def targets(summary: dict[str, Any], middle: int) -> dict[str, Any]:
    """The issue's targets on one trace's pooled cases."""
    at = summary["checkpoints"][middle]
    return {
        "coverage80": abs(summary["coverage80"] - 80) <= TOLERANCE,
        "coverage95": abs(summary["coverage95"] - 95) <= TOLERANCE,
        "mape_below_baseline": at["mape"] < at["baseline_mape"],
    }


def run(name: str, series: Sequence[Series]) -> dict[str, Any]:
    """Backtest every scope of one trace, print its table and targets, return the figures."""
    result = measure(series)
    report(name, series, result)
    return result


def measure(series: Sequence[Series]) -> dict[str, Any]:
    from aifinops.core.forecast import summarise

    checkpoints = series[0].checkpoints
    middle = checkpoints[len(checkpoints) // 2]
    scopes: dict[str, Any] = {}
    pooled: list[Any] = []
    began = time.perf_counter()
    for s in series:
        cases, summary = backtest(s)
        pooled += cases
        scopes[s.scope] = summary
    overall = summarise(pooled)
    overall["exact"] = sum(map(exact, pooled))
    informative = [c for c in pooled if not exact(c)]
    if informative:  # the coverage that tests the intervals
        overall["coverage80_not_exact"] = coverage(informative, 80)
        overall["coverage95_not_exact"] = coverage(informative, 95)
    at_middle = [c for c in pooled if c.checkpoint == middle]
    closer = sum(c.ape < c.baseline_ape - 1e-12 for c in at_middle)
    farther = sum(c.ape > c.baseline_ape + 1e-12 for c in at_middle)
    overall["middle_cases"] = {"closer": closer, "farther": farther,
                               "tied": len(at_middle) - closer - farther}  # fmt: skip
    overall["seconds"] = round(time.perf_counter() - began, 2)
    return {"scopes": scopes, "overall": overall, "targets": targets(overall, middle),
            "middle": middle}  # fmt: skip


def report(name: str, series: Sequence[Series], result: dict[str, Any]) -> None:
    first, scopes, overall = series[0], result["scopes"], result["overall"]
    checkpoints, middle = first.checkpoints, result["middle"]
    unit = "d" if first.step.days == 1 else "min"
    print(f"\n== {name}: {len(series)} scopes, {len(first.values)} points of {_step(first)} "
          f"from {first.start:%Y-%m-%d %H:%M}, {len(first.periods)} periods, checkpoints "
          f"{'/'.join(f'{c} {unit}' for c in checkpoints)} ({first.unit})")  # fmt: skip
    head = "".join(f"{f'{label}@{c}':>10}" for label in ("MAPE", "sMAPE", "base")
                   for c in checkpoints)  # fmt: skip
    print(f"{'scope':16}{'cases':>6}{head}{f'x base@{middle}':>11}{'cov80':>7}{'cov95':>7}"
          f"{'s':>7}  methods")  # fmt: skip
    for scope, summary in [*scopes.items(), ("ALL (pooled)", overall)]:
        print(_row(scope, summary, checkpoints, middle))
    mids = [s["checkpoints"][middle] for s in scopes.values() if middle in s["checkpoints"]]
    below = sum(m["mape"] < m["baseline_mape"] for m in mids)
    tied = sum(m["mape"] == m["baseline_mape"] for m in mids)
    verdict = " ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in result["targets"].items())
    at = overall["checkpoints"][middle]
    print(f"targets ({name}, pooled): coverage80 {overall['coverage80']:.1f} % (75-85), "
          f"coverage95 {overall['coverage95']:.1f} % (90-100), MAPE@{middle} {at['mape']:.2f} % "
          f"vs run-rate {at['baseline_mape']:.2f} %: {verdict}; scopes below the run-rate at "
          f"{middle}: {below} of {len(scopes)} ({tied} tied)")  # fmt: skip
    m = overall["middle_cases"]
    print(f"  at {middle}, case by case: the forecast closer than the run-rate in "
          f"{m['closer']}, farther in {m['farther']}, tied in {m['tied']}")  # fmt: skip
    if overall["exact"]:
        print(f"  {overall['exact']} of {overall['cases']} cases are exact with no width (a "
              f"constant month); over the other {overall['cases'] - overall['exact']}: "
              f"coverage80 {overall.get('coverage80_not_exact', 0):.1f} %, coverage95 "
              f"{overall.get('coverage95_not_exact', 0):.1f} %")  # fmt: skip


def _step(s: Series) -> str:
    return "1 day" if s.step.days == 1 else f"{s.step.seconds // 60} min"


def _row(scope: str, s: dict[str, Any], checkpoints: Sequence[int], middle: int) -> str:
    at = s["checkpoints"]

    def cell(c: int, key: str) -> str:
        return f"{at[c][key]:10.2f}" if c in at else f"{'-':>10}"

    cells = "".join(cell(c, k) for k in ("mape", "smape", "baseline_mape") for c in checkpoints)
    mid = at.get(middle)
    ratio = (f"{mid['mape'] / mid['baseline_mape']:11.2f}" if mid and mid["baseline_mape"]
             else f"{'-':>11}")  # fmt: skip
    chosen: dict[str, int] = {}
    for method, n in s["methods"].items():
        chosen[short(method)] = chosen.get(short(method), 0) + n
    methods = ", ".join(f"{m} {n}" for m, n in sorted(chosen.items(), key=lambda x: -x[1]))
    return (f"{scope[:16]:16}{s['cases']:6d}{cells}{ratio}{s.get('coverage80', 0):7.1f}"
            f"{s.get('coverage95', 0):7.1f}{s['seconds']:7.1f}  {methods}")  # fmt: skip


def _shared_data() -> str:
    roots = [os.environ.get("AIFINOPS_SHARED_DATA", "")]
    roots += [str(Path(__file__).resolve().parents[2] / "shared" / "data"), "/work/shared/data"]
    return next((r for r in roots if r and Path(r).is_dir()), "/work/shared/data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", choices=[*TRACES, "all"], default="all")
    ap.add_argument("--json", help="write every figure there too")
    ap.add_argument("--data", default=_shared_data(),
                    help="the shared data folder holding the traces (default: "
                    "$AIFINOPS_SHARED_DATA, else ../shared/data beside the checkout, else "
                    "/work/shared/data, as tests/conftest.py looks)")  # fmt: skip
    args = ap.parse_args()
    from aifinops.core import forecast as forecast_module

    names = list(TRACES) if args.trace == "all" else [args.trace]
    print(f"forecast backtest on {', '.join(names)} ({os.cpu_count()} CPUs here); MAPE, "
          "sMAPE, the run-rate's MAPE (base) and coverage in %; methods: snaive seasonal "
          "naive, ets AutoETS, arima AutoARIMA, rr the run-rate chosen by backtest, rr* the "
          "run-rate a history of two seasons or less falls back to")  # fmt: skip
    files = [Path(args.data) / rel for name in names for rel in FILES[name]]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise SystemExit(f"trace files not found: {', '.join(missing)}; --data names the "
                         "folder that holds cluster-traces/ and llm-traces/")  # fmt: skip
    engine = Path(forecast_module.__file__).read_bytes()
    print(f"engine: core/forecast.py sha256 {hashlib.sha256(engine).hexdigest()[:12]}")
    out = {name: run(name, TRACES[name](Path(args.data))) for name in names}
    verdicts = {n: all(r["targets"].values()) for n, r in out.items()}
    print(
        "\nall targets: "
        + ", ".join(f"{n} {'PASS' if ok else 'FAIL'}" for n, ok in verdicts.items())
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
