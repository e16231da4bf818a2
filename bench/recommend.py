"""Recommendation facts benchmark: `Recommend.facts` (every GPU holding's hourly use, its
cost from the allocation, the offers and the unallocated spend) over the synthetic fleet of
bench/allocation.py, against the allocation it rests on, in the same run.

Baseline: `cost --by team` for the same window in process (one allocation). The facts run
one allocation (by team, namespace, workload and node: one row per pod) and the engine's
hourly roll-up of the samples (store/recommend.py), then build the rules' Python values.
The first two are timed on their own as well; the rest of `facts` is the Python values.

    python bench/recommend.py                  # 1,000 GPUs x 30 days
    python bench/recommend.py --gpus 200 --days 7
    python bench/recommend.py --db /tmp/fleet.duckdb   # build there once, reuse after
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.duckdb")
        if not Path(db).exists():
            built = build(db, args.gpus, args.days, 1, start=start)
            rows, workloads, took = built["rows"], built["workloads"], built["build_s"]
            print(f"fleet: {args.gpus} GPUs x {args.days} days, {rows:,} sample rows, "
                  f"{workloads:,} workloads (built in {took:.1f} s)")  # fmt: skip
        else:
            print(f"fleet: reused {db}")
        run(db, start, start + timedelta(days=args.days), args.repeat)


def run(db: str, start: datetime, end: datetime, repeat: int) -> None:
    from aifinops.app.recommend import ALLOCATION_BY, Recommend
    from aifinops.config import load_settings
    from aifinops.core.windows import Window
    from aifinops.service import Service
    from aifinops.store import recommend as engine

    svc = Service(load_settings(None, env={}, flags={"db": db}))
    recommend = Recommend(svc.ctx, svc.costs, svc.prices)
    window = Window(start, end)
    span = f"{start.isoformat()},{end.isoformat()}"

    def timed(fn: Callable[[], Any]) -> tuple[list[float], Any]:
        out, result = [], None
        for _ in range(repeat):
            t = time.perf_counter()
            result = fn()
            out.append(time.perf_counter() - t)
        return out, result

    base, report = timed(lambda: svc.cost(window=span))
    by_pod, _ = timed(lambda: svc.cost(window=span, by=list(ALLOCATION_BY), idle="separate"))
    rollup, tables = timed(lambda: engine.holdings(svc.store, window.start_ms, window.end_ms))
    whole, facts = timed(lambda: recommend.facts(window))
    svc.close()

    hours = sum(len(h.hours) for h in facts.holdings)
    print(f"facts: {len(facts.holdings):,} holdings, {hours:,} holding-hours, "
          f"{len(facts.offers):,} offers, {len(facts.spend):,} unallocated lines; total "
          f"spend {facts.total_spend:,.2f} (cost --by team: {report.asset_cost:,.2f})")  # fmt: skip
    assert tables.hours.num_rows == hours
    rows = {
        "cost --by team (one allocation)": base,
        "cost --by team,namespace,workload,node": by_pod,
        "engine roll-up (store/recommend.py)": rollup,
        "Recommend.facts (all of it)": whole,
    }
    floor = statistics.median(base)
    print(f"{'':40} {'median s':>9} {'min s':>7} {'x one allocation':>17}")
    for name, times in rows.items():
        med = statistics.median(times)
        print(f"{name:40} {med:9.3f} {min(times):7.3f} {med / floor:17.1f}")


if __name__ == "__main__":
    main()
