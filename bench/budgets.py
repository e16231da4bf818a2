"""Budget check benchmark: every budget's status (and the check that records its alerts) on
the synthetic fleet of bench/allocation.py, against the allocation that it rests on, in the
same run.

The fleet: GPUS GPUs over DAYS days starting at the period's start (a month), so a check at
its end sees a whole period and 28 days of history are asked for. BUDGETS budgets, one per
team and a few per namespace, share the period (one allocation serves them all).
Baselines: `cost --by team` for the same window in process (one allocation, the floor of
one budget question), and the two allocations a check runs (daily history by the scope
dimensions; the period by workload).

    python bench/budgets.py                  # 1,000 GPUs x 30 days
    python bench/budgets.py --gpus 200 --days 7
"""

from __future__ import annotations

import argparse
import statistics
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
    args = ap.parse_args()
    from aifinops.config import load_settings
    from aifinops.service import Service

    start = datetime(2026, 11, 1, tzinfo=UTC)
    at = start + timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        built = build(db, args.gpus, args.days, 1, start=start)
        print(f"fleet: {args.gpus} GPUs x {args.days} days, {built['rows']:,} sample rows, "
              f"{built['workloads']:,} workloads (built in {built['build_s']:.1f} s)")  # fmt: skip
        svc = Service(load_settings(None, env={}, flags={"db": db}))
        span = f"{start.isoformat()},{at.isoformat()}"
        teams = sorted({r.key["team"] for r in svc.cost(window=span).rows})
        namespaces = sorted(
            {r.key["namespace"] for r in svc.cost(window=span, by=["namespace"]).rows}
        )
        namespaces = namespaces[:5]
        budgets = [{"name": f"team-{t}".replace("_", "-"), "limit": 100000,
                    "scope": {"teams": [t]}, "alerts": [{"thresholdPercent": 80}]}
                   for t in teams if not t.startswith("__")]  # fmt: skip
        budgets += [{"name": f"ns-{n}", "limit": 50000, "scope": {"namespaces": [n]},
                     "alerts": [{"thresholdPercent": 90, "basis": "forecast"}]}
                    for n in namespaces if not n.startswith("__")]  # fmt: skip
        svc.apply_budgets(budgets)

        def timed(fn: object) -> list[float]:
            out = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fn()  # type: ignore[operator]
                out.append(time.perf_counter() - t)
            return out

        rows = {
            "cost --by team (one allocation)": timed(lambda: svc.cost(window=span)),
            f"budget status, {len(budgets)} budgets": timed(lambda: svc.budget_statuses(at)),
            f"budget check, {len(budgets)} budgets": timed(lambda: svc.check_budgets(at)),
        }
        svc.close()
    base = statistics.median(rows["cost --by team (one allocation)"])
    print(f"{'':40} {'median s':>9} {'min s':>7} {'x one allocation':>17}")
    for name, times in rows.items():
        med = statistics.median(times)
        print(f"{name:40} {med:9.3f} {min(times):7.3f} {med / base:17.1f}")


if __name__ == "__main__":
    main()
