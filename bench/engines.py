"""The two engines side by side: ingest and a year's window, DuckDB against PostgreSQL.

1. Ingest: N GPUs x 1 day of 1-minute samples (the allocation benchmark's synthetic fleet),
   written by `Service.load_fleet` into a new DuckDB file and into a new PostgreSQL schema
   (COPY), roll-ups included; rows per second each, and PostgreSQL's against DuckDB's.
2. A year from the roll-ups: N GPUs x 365 days, one sample an hour (a year of 1-minute
   samples is 525 M rows: the raw samples would be gone under retention anyway, and the
   daily roll-up a year's window reads is the same either way); `cost --by team` over the
   whole year (day-aligned, at the default step `auto`: a day, from the daily roll-up),
   best of REPEAT in-process, and as a whole command; with `--step 1d` (a row per day);
   against the same window's bare aggregate over the roll-up in the same run. Measured on
   the jobs as GPU jobs only, then again with a pod's CPU and memory requests on each.

    python bench/engines.py --gpus 1000            # PostgreSQL at 127.0.0.1:5432, db test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

PG = "postgresql://postgres@127.0.0.1:5432/test"
HOUR_MS = 3_600_000
MICRO = 1_000_000  # held_* are ms x 10^6 (the exact shares)
YEAR_START = datetime(2025, 12, 1, tzinfo=UTC)


def service(db: str) -> Any:
    from aifinops.config import load_settings
    from aifinops.service import Service

    return Service(load_settings(None, env={}, flags={"db": db}))


def new_pg() -> str:
    return f"{PG}?schema=bench_{uuid.uuid4().hex[:10]}"


def drop_pg(url: str) -> None:
    import psycopg

    schema = url.split("schema=")[1]
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def ingest(db: str, gpus: int) -> dict[str, float]:
    from aifinops.demo.fleet import bench_fleet

    fleet = bench_fleet(gpus, 1, seed=1)
    svc = service(db)
    began = time.perf_counter()
    rows = svc.load_fleet(fleet, 1)
    took = time.perf_counter() - began
    svc.close()
    return {"rows": rows, "seconds": took, "rows_per_s": rows / took}


def year_fleet(gpus: int, days: int, seed: int = 1) -> tuple[Any, Any]:
    """A fleet of long jobs (~3 days each) with one sample an hour per GPU."""
    import numpy as np
    import pyarrow as pa

    from aifinops.demo.fleet import TEAMS, Fleet, NodeSpec
    from aifinops.sources.facts import usage_table

    rng = np.random.default_rng(seed)
    hours = days * 24
    start_ms = int(YEAR_START.timestamp() * 1000)
    teams = list(TEAMS)
    nodes = [
        NodeSpec(f"node-{i:04d}", min(8, gpus - i * 8), "NVIDIA A100-SXM4-40GB", "aws",
                 "us-east-1", None, "p4d.24xlarge", "on-demand", 96, 1152)
        for i in range((gpus + 7) // 8)
    ]  # fmt: skip
    workloads: list[dict[str, Any]] = []
    holders: dict[tuple[str, int], np.ndarray[Any, Any]] = {}
    for node in nodes:
        for g in range(node.gpu_count):
            owner = np.full(hours, -1, dtype=np.int64)
            t = int(rng.integers(0, 12))
            while t < hours:
                length = max(1, int(rng.exponential(72)))
                end = min(hours, t + length)
                team = teams[len(workloads) % len(teams)]
                n = len(workloads)
                workloads.append({
                    "workload_id": f"{TEAMS[team][0]}/job-{n:07d}", "kind": "pod",
                    "namespace": TEAMS[team][0], "name": f"job-{n:07d}",
                    "node_id": node.node_id, "start_ms": start_ms + t * HOUR_MS,
                    "end_ms": start_ms + end * HOUR_MS, "gpu_request": 1.0,
                    "gpu_resource": "nvidia.com/gpu", "labels": {"team": team},
                    "source": "bench",
                })  # fmt: skip
                owner[t:end] = n
                t = end + int(rng.integers(0, 24))
            holders[(node.node_id, g)] = owner
    namespaces = [{"namespace": ns, "labels": {"team": t}} for t, (ns, *_) in TEAMS.items()]
    fleet = Fleet(start_ms, hours * 60, nodes, workloads, namespaces, [])
    names = pa.array([w["workload_id"] for w in workloads], pa.string())
    ts = start_ms + np.arange(hours, dtype=np.int64) * HOUR_MS

    def batches() -> Any:
        for node in nodes:
            parts = [(g, holders[(node.node_id, g)]) for g in range(node.gpu_count)]
            owner = np.concatenate([o for _, o in parts])
            idx = pa.array(np.where(owner >= 0, owner, 0), pa.int32(), mask=owner < 0)
            held = np.full(len(owner), HOUR_MS * MICRO, dtype=np.int64)
            busy = (rng.uniform(0.3, 0.95, len(owner)) * HOUR_MS * MICRO).astype(np.int64)
            yield usage_table(
                np.tile(ts, len(parts)),
                pa.array([node.node_id] * len(owner), pa.string()),
                pa.array([f"{node.node_id}-gpu{g}" for g, o in parts for _ in o], pa.string()),
                pa.DictionaryArray.from_arrays(idx, names).cast(pa.string()),
                held,
                held,
                np.where(owner >= 0, busy, 0),
            )

    return fleet, batches


def build_year(db: str, gpus: int, days: int) -> dict[str, float]:
    fleet, batches = year_fleet(gpus, days)
    svc = service(db)
    began = time.perf_counter()
    rows = svc.ingest.load_generated(fleet, batches())
    took = time.perf_counter() - began
    # what a server's housekeeping does after a bulk load: DuckDB's CHECKPOINT, and
    # PostgreSQL's VACUUM ANALYZE (without the planner's statistics, PostgreSQL sorts the
    # year's rows on disk to group them: 5.1 s against 3.7 s on a quarter of the fleet)
    svc.store.reclaim()
    svc.close()
    return {"rows": rows, "workloads": len(fleet.workloads), "build_s": took}


def year_window(days: int) -> str:
    end = YEAR_START + timedelta(days=days)
    return f"{YEAR_START.isoformat()},{end.isoformat()}"


def with_cpu_requests(db: str) -> None:
    """Give every job the CPU and memory requests a pod has (10 cores, 100 GiB of the
    node's 96 and 1,152: an eighth, beside its GPU), so that allocation also charges CPU
    and RAM per job and step, as on a Kubernetes fleet."""
    svc = service(db)
    svc.store.raw("UPDATE workloads SET cpu_request = 10, mem_request_gib = 100")
    svc.store.reclaim()
    svc.close()


def measure_year(db: str, days: int, repeat: int) -> dict[str, Any]:
    """`cost --by team` over the year at the default step (`auto`: a day for a year, from
    the daily roll-up) and with `--step 1d` (a row per day), best of `repeat` each."""
    svc = service(db)
    times, daily = [], []
    # each query `repeat` times in a row (run in turn, `--step 1d`'s temporary tables would
    # push the roll-up out of PostgreSQL's 128 MB of shared buffers before each default run)
    for _ in range(repeat):
        t = time.perf_counter()
        report = svc.cost(window=year_window(days), by=["team"])
        times.append(time.perf_counter() - t)
    for _ in range(repeat):
        t = time.perf_counter()
        per_day = svc.cost(window=year_window(days), by=["team"], step="1d")
        daily.append(time.perf_counter() - t)
    total = str(report.total_cost)
    assert per_day.total_cost == report.total_cost, (per_day.total_cost, report.total_cost)
    # the floor: the bare sum of the daily roll-up over the same window, as Arrow
    store = svc.store
    u = store.table("gpu_usage_daily")
    floors = []
    for _ in range(repeat):
        t = time.perf_counter()
        store.arrow(u.group_by("workload_id").aggregate(h=u.held_req.sum(), b=u.used.sum()))
        floors.append(time.perf_counter() - t)
    svc.close()
    return {"best_s": min(times), "daily_s": min(daily), "floor_s": min(floors), "total": total}


def whole_command(db: str, days: int) -> float:
    began = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "aifinops", "--db", db, "cost", "--by", "team",
         "--window", year_window(days), "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return time.perf_counter() - began


class _Skip(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--skip-ingest", action="store_true", help="only the year")
    args = parser.parse_args()
    out: dict[str, Any] = {"gpus": args.gpus, "days": args.days}
    with tempfile.TemporaryDirectory() as tmp:
        pg = new_pg()
        try:
            if args.skip_ingest:
                raise _Skip
            print(f"1. ingest: {args.gpus} GPUs x 1 day of 1-minute samples", flush=True)
            duck = ingest(str(Path(tmp) / "ingest.duckdb"), args.gpus)
            post = ingest(pg, args.gpus)
            for name, r in (("duckdb", duck), ("postgresql", post)):
                print(f"   {name:10s} {r['rows']:>10,} rows in {r['seconds']:6.2f} s"
                      f"  = {r['rows_per_s']:>10,.0f} rows/s")  # fmt: skip
            print(f"   PostgreSQL / DuckDB rate: {post['rows_per_s'] / duck['rows_per_s']:.2f}")
            out["ingest"] = {"duckdb": duck, "postgresql": post}
        except _Skip:
            pass
        finally:
            drop_pg(pg)
        pg = new_pg()
        try:
            print(f"2. a year from the roll-ups: {args.gpus} GPUs x {args.days} days", flush=True)
            year: dict[str, Any] = {}
            for name, db in (("duckdb", str(Path(tmp) / "year.duckdb")), ("postgresql", pg)):
                built = build_year(db, args.gpus, args.days)
                print(
                    f"   {name:10s} built {built['rows']:,} hourly samples, "
                    f"{built['workloads']:,} jobs in {built['build_s']:.1f} s",
                    flush=True,
                )
                year[name] = built
                for fleet in ("GPUs only", "with CPU/RAM requests"):
                    if fleet != "GPUs only":
                        with_cpu_requests(db)
                    got = measure_year(db, args.days, args.repeat)
                    got["command_s"] = whole_command(db, args.days)
                    year[name][fleet] = got
                    print(f"   {'':10s} {fleet}: cost --by team over the year, in-process, "
                          f"best of {args.repeat}: {got['best_s']:.2f} s (default step: "
                          f"auto, a day), {got['daily_s']:.2f} s (--step 1d, a row per "
                          f"day; the bare daily sum {got['floor_s']:.3f} s); "
                          f"{got['command_s']:.2f} s as a whole command (default step); "
                          f"total {Decimal(got['total']):,.2f}", flush=True)  # fmt: skip
            same = all(year["duckdb"][f]["total"] == year["postgresql"][f]["total"]
                       for f in ("GPUs only", "with CPU/RAM requests"))  # fmt: skip
            print(f"   the same totals on both: {same}")
            out["year"] = year
        finally:
            drop_pg(pg)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
