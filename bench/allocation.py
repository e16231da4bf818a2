"""Allocation benchmark: a seeded synthetic fleet of N GPUs x D days at 1-minute samples.

Prints the sample rows, the time to allocate by team, the time of a bare DuckDB GROUP BY
over the same sample table measured in the same run (the floor), their ratio, and the peak
memory of each. Each measurement runs in a fresh process so peak RSS is its own.

    python bench/allocation.py --gpus 1000 --days 30      # 43.2 M samples
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_SQL = "SELECT workload_id, sum(held_req), sum(used) FROM gpu_usage GROUP BY workload_id"


def build(db: str, gpus: int, days: int, seed: int) -> dict[str, float]:
    from aifinops.config import load_settings
    from aifinops.demo.fleet import bench_fleet
    from aifinops.service import Service

    began = time.perf_counter()
    fleet = bench_fleet(gpus, days, seed=seed)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", help="keep the store here (default: a temporary file)")
    ap.add_argument(
        "--measure",
        choices=["build", "floor", "floor-arrow", "allocate", "allocate-weighted"],
        help=argparse.SUPPRESS,
    )
    args = ap.parse_args()
    if args.measure == "build":
        print(json.dumps(build(args.db, args.gpus, args.days, args.seed)))
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
        floor, alloc = out["floor"], out["allocate"]
        print(
            f"floor (bare DuckDB GROUP BY workload over the samples): "
            f"{floor['best_s']:.3f} s best of {args.repeat}, peak {floor['peak_mb']:.0f} MB"
        )
        print(
            f"allocate by team (aifinops cost):                       "
            f"{alloc['best_s']:.3f} s best of {args.repeat}, peak {alloc['peak_mb']:.0f} MB"
        )
        arrow, weighted = out["floor-arrow"], out["allocate-weighted"]
        print(
            f"  (the same GROUP BY fetched as Arrow, no Python rows: {arrow['best_s']:.3f} s; "
            f"allocate by team with --idle weighted, per-step rows throughout: "
            f"{weighted['best_s']:.3f} s = {weighted['best_s'] / floor['best_s']:.2f}x)"
        )
        ratio = alloc["best_s"] / floor["best_s"]
        print(
            f"ratio allocate / floor: {ratio:.2f}x (target <= 3x); "
            f"peak memory {alloc['peak_mb'] / 1024:.2f} GB (target < 4 GB)"
        )


if __name__ == "__main__":
    main()
