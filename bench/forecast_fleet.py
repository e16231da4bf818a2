"""Forecast benchmark on a large fleet: `aifinops forecast` over the synthetic fleet of
bench/allocation.py (1,000 GPUs x 30 days of one-minute samples), against `cost` over the
same days, each a whole command in a fresh process, in the same run.

- `cost --by team --window <the 30 days> --step 1d`: the allocation per team and day, the
  baseline (the forecast's history is that allocation, by workload too);
- `forecast --by team --period-end`: every team's series, the method chosen by backtest,
  the ended workloads taken out;
- `forecast --by "" --horizon 2d`: the whole fleet, hourly.

    python bench/forecast_fleet.py                  # 1,000 GPUs x 30 days
    python bench/forecast_fleet.py --db /tmp/fleet.duckdb   # build there once, reuse after
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from allocation import build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", help="the fleet's store: built there if absent, else reused")
    args = ap.parse_args()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.duckdb")
        if not Path(db).exists():
            built = build(db, args.gpus, args.days, 1, start=start)
            rows, workloads, took = built["rows"], built["workloads"], built["build_s"]
            print(f"fleet: {args.gpus} GPUs x {args.days} days, {rows:,} sample rows, "
                  f"{workloads:,} workloads (built in {took:.1f} s)")  # fmt: skip
        else:
            print(f"fleet: reused {db}")
        span = f"{start.isoformat()},{end.isoformat()}"
        commands = {
            "cost --by team --step 1d (baseline)": ["cost", "--by", "team", "--window", span,
                                                    "--step", "1d", "--format", "json"],
            "forecast --by team --period-end": ["forecast", "--by", "team", "--period-end",
                                                "--format", "json"],
            "forecast --by '' --horizon 2d (hourly)": ["forecast", "--by", "", "--horizon",
                                                      "2d", "--format", "json"],
        }  # fmt: skip
        print(f"whole commands, {args.repeat} runs each, fresh processes "
              f"({os.cpu_count()} CPUs here):")  # fmt: skip
        print(f"{'':42} {'median s':>9} {'min s':>7} {'peak MB':>8} {'x baseline':>11}")
        floor = None
        for name, argv in commands.items():
            walls, peaks, out = [], [], None
            for _ in range(args.repeat):
                wall, peak, out = _run(db, argv)
                walls.append(wall)
                peaks.append(peak)
            med = statistics.median(walls)
            floor = floor or med
            print(f"{name:42} {med:9.2f} {min(walls):7.2f} {max(peaks):8.0f} "
                  f"{med / floor:11.2f}")  # fmt: skip
            if argv[0] == "forecast" and out:
                doc = json.loads(out)
                methods = sorted({s["method"] for s in doc["scopes"]})
                print(f"{'':42} {len(doc['scopes'])} scope(s); methods: {', '.join(methods)}")


def _run(db: str, argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak resident MB of one fresh `aifinops` process, and its output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "aifinops", "--db", db, *argv],
                                stdout=out, stderr=err, text=True)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"aifinops {' '.join(argv)} failed: {err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


if __name__ == "__main__":
    main()
