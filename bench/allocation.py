"""Allocation benchmark: a seeded synthetic fleet of N GPUs x D days at 1-minute samples.

Two comparisons, each printed as what it is:
- whole commands, as a user runs them (fresh processes, paired and interleaved, the same
  number of runs each): `aifinops cost --by team` against the floor command, a fresh
  Python that runs the bare DuckDB `GROUP BY` over the samples and takes it as Arrow;
- in-process, beside it: `Service.cost()` against the same `GROUP BY` as Arrow (and as
  Python tuples, and `--idle weighted`), best of REPEAT.
Each side's CPU time over its wall time says how many cores it used. Peak memory is each
process's own (every measurement runs in a child of this small process).

    python bench/allocation.py --gpus 1000 --days 30      # 43.2 M samples
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FLOOR_SQL = "SELECT workload_id, sum(held_req), sum(used) FROM gpu_usage GROUP BY workload_id"


def build(db: str, gpus: int, days: int, seed: int, start: Any = None) -> dict[str, float]:
    """The synthetic fleet's store (from the demo's start, or `start`, a datetime)."""
    from aifinops.config import load_settings
    from aifinops.demo.fleet import bench_fleet
    from aifinops.service import Service

    began = time.perf_counter()
    fleet = bench_fleet(gpus, days, seed=seed, **({"start": start} if start else {}))
    svc = Service(load_settings(None, env={}, flags={"db": db}))
    rows = svc.load_fleet(fleet, seed)
    svc.store.raw("CHECKPOINT")
    svc.close()
    return {"rows": rows, "workloads": len(fleet.workloads), "build_s": time.perf_counter() - began}


def measure(db: str, what: str, repeat: int) -> dict[str, float]:
    times = []
    if what in ("floor", "floor-arrow"):
        import duckdb

        con = duckdb.connect(db, read_only=True)
        for _ in range(repeat):
            t = time.perf_counter()
            if what == "floor":
                con.execute(FLOOR_SQL).fetchall()
            else:  # the same GROUP BY without building Python objects from its rows
                con.sql(FLOOR_SQL).to_arrow_table()
            times.append(time.perf_counter() - t)
    else:
        from aifinops.config import load_settings
        from aifinops.service import Service

        svc = Service(load_settings(None, env={}, flags={"db": db}))
        extent = svc.data_extent()
        assert extent is not None
        from aifinops.core.windows import from_ms

        span = f"{from_ms(extent[0]).isoformat()},{from_ms(extent[1] + 60_000).isoformat()}"
        for _ in range(repeat):
            t = time.perf_counter()
            idle = "weighted" if what == "allocate-weighted" else None
            report = svc.cost(window=span, by=["team"], idle=idle)
            times.append(time.perf_counter() - t)
        assert abs(report.total_cost - report.asset_cost) < 0.01
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"best_s": min(times), "median_s": sorted(times)[len(times) // 2], "peak_mb": peak_mb}


def command(db: str, what: str) -> dict[str, float]:
    """One whole command in a fresh process: wall time, CPU time, peak memory."""
    span = _span(db)
    if what == "cmd-ours":
        argv = [sys.executable, "-m", "aifinops", "--db", db, "cost", "--by", "team",
                "--window", span, "--format", "json"]  # fmt: skip
    else:  # the floor as a command: a fresh Python, the bare GROUP BY, taken as Arrow
        code = (f"import duckdb; duckdb.connect({db!r}, read_only=True)"
                f".sql({FLOOR_SQL!r}).to_arrow_table()")  # fmt: skip
        argv = [sys.executable, "-c", code]
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - began
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = use.ru_utime + use.ru_stime
    return {"s": wall, "cpu_s": cpu, "peak_mb": use.ru_maxrss / 1024}


def _span(db: str) -> str:
    import duckdb

    con = duckdb.connect(db, read_only=True)
    first, last = con.execute("SELECT min(ts_ms), max(ts_ms) FROM gpu_usage").fetchone()
    con.close()
    from datetime import UTC, datetime

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

    return f"{iso(first)},{iso(last + 60_000)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", help="keep the store here (default: a temporary file)")
    ap.add_argument(
        "--measure",
        choices=[
            "build",
            "floor",
            "floor-arrow",
            "allocate",
            "allocate-weighted",
            "cmd-ours",
            "cmd-floor",
        ],
        help=argparse.SUPPRESS,
    )
    args = ap.parse_args()
    if args.measure == "build":
        print(json.dumps(build(args.db, args.gpus, args.days, args.seed)))
        return
    if args.measure in ("cmd-ours", "cmd-floor"):
        print(json.dumps(command(args.db, args.measure)))
        return
    if args.measure:
        print(json.dumps(measure(args.db, args.measure, args.repeat)))
        return
    # Every phase runs in its own process started from this small one: Linux keeps the
    # peak RSS across fork+exec, so a child of a big parent would report the parent's peak.
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.duckdb")
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                "build",
                "--db",
                db,
                "--gpus",
                str(args.gpus),
                "--days",
                str(args.days),
                "--seed",
                str(args.seed),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        built = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"fleet: {args.gpus} GPUs x {args.days} days at 1-minute samples, "
            f"{built['workloads']:,} workloads, {built['rows']:,} sample rows "
            f"(built in {built['build_s']:.1f} s)"
        )
        out = {}
        for what in ("floor", "floor-arrow", "allocate", "allocate-weighted"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    what,
                    "--db",
                    db,
                    "--repeat",
                    str(args.repeat),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            out[what] = json.loads(proc.stdout.strip().splitlines()[-1])
        # whole commands, paired and interleaved: floor, ours, floor, ours...
        runs: dict[str, list[dict[str, float]]] = {"cmd-floor": [], "cmd-ours": []}
        for _ in range(args.repeat):
            for what in runs:
                proc = subprocess.run(
                    [sys.executable, __file__, "--measure", what, "--db", db],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                runs[what].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        cores = f"{os.cpu_count()} CPUs here"
        print(f"whole commands, fresh processes, {args.repeat} runs each, paired and "
              f"interleaved ({cores}):")  # fmt: skip
        names = {"cmd-floor": "floor: python -c <GROUP BY as Arrow>",
                 "cmd-ours": "aifinops cost --by team --format json"}  # fmt: skip
        for what, got in runs.items():
            walls = sorted(r["s"] for r in got)
            cpu = sum(r["cpu_s"] for r in got) / sum(r["s"] for r in got)
            print(f"  {names[what]:40s} median {walls[len(walls) // 2]:6.2f} s, best "
                  f"{walls[0]:6.2f} s, {cpu:.1f} cores busy on average, peak "
                  f"{max(r['peak_mb'] for r in got):.0f} MB")  # fmt: skip
        med = {w: sorted(r["s"] for r in got)[len(got) // 2] for w, got in runs.items()}
        print(f"  ratio (medians) aifinops / floor: {med['cmd-ours'] / med['cmd-floor']:.2f}x")
        arrow, tuples, alloc = out["floor-arrow"], out["floor"], out["allocate"]
        weighted = out["allocate-weighted"]
        print(f"in process (not what a user runs), best of {args.repeat}:")
        print(f"  floor: the GROUP BY taken as Arrow          {arrow['best_s']:.3f} s, peak "
              f"{arrow['peak_mb']:.0f} MB")  # fmt: skip
        print(f"  Service.cost(by team)                       {alloc['best_s']:.3f} s, peak "
              f"{alloc['peak_mb']:.0f} MB")  # fmt: skip
        print(f"  (the GROUP BY as Python tuples: {tuples['best_s']:.3f} s; --idle weighted, "
              f"per-step rows throughout: {weighted['best_s']:.3f} s = "
              f"{weighted['best_s'] / arrow['best_s']:.2f}x the Arrow floor)")  # fmt: skip
        ratio = alloc["best_s"] / arrow["best_s"]
        print(f"  ratio Service.cost / Arrow floor: {ratio:.2f}x; peak memory "
              f"{alloc['peak_mb'] / 1024:.2f} GB (target < 4 GB)")  # fmt: skip


if __name__ == "__main__":
    main()
