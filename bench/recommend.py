"""Recommendation facts benchmark: `Recommend.facts` (every GPU holding's hourly use, its
cost from the allocation, the offers and the unallocated spend) over the synthetic fleet of
bench/allocation.py, against the allocation it rests on, in the same run; then the whole
`aifinops optimize` over the same window as a user runs it.

In process, best and median of REPEAT:
- `cost --by team`: one allocation, the baseline;
- the allocation the facts rest on (the engine's rows by team, namespace, workload and
  node: one per pod), on its own;
- the engine's hourly roll-up and each holding's money from those rows (store/recommend.py);
- `Recommend.facts`, all of it: the two above, then the rules' Python values (one object
  per holding and per holding-hour, as core/recommend/base.py types them).
Each with its CPU time (this process's, DuckDB's threads included): on a machine shared
with other work, the CPU seconds move less than the wall seconds.
Whole command, in a fresh process on a fresh copy of the store (so each run finds every
finding new, as a first run does): `aifinops optimize --window ... --format json`: wall and
CPU time, peak memory. It runs the rules and stores their findings too, so on a fleet this
size it takes far longer than the facts; `--command-runs 0` leaves it out.

    python bench/recommend.py                  # 1,000 GPUs x 30 days
    python bench/recommend.py --gpus 200 --days 7
    python bench/recommend.py --db /tmp/fleet.duckdb   # build there once, reuse after
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
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
    ap.add_argument("--command-runs", type=int, default=1,
                    help="runs of the whole `aifinops optimize` (0: none)")  # fmt: skip
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
        run(db, start, end, args.repeat)
        if args.command_runs > 0:
            whole_command(db, start, end, args.command_runs, tmp)


def run(db: str, start: datetime, end: datetime, repeat: int) -> None:
    from aifinops.app.recommend import Recommend
    from aifinops.config import load_settings
    from aifinops.core.windows import Window
    from aifinops.service import Service
    from aifinops.store import recommend as engine
    from aifinops.store.allocate import allocate, price_table

    svc = Service(load_settings(None, env={}, flags={"db": db}))
    recommend = Recommend(svc.ctx, svc.costs, svc.prices)
    window = Window(start, end)
    span = f"{start.isoformat()},{end.isoformat()}"
    prices, nodes = svc.prices.node_prices()
    rules = svc.settings.attribution.rules()

    def timed(fn: Callable[[], Any]) -> tuple[list[tuple[float, float]], Any]:
        """Wall and CPU seconds (this process's, DuckDB's threads included) of each run."""
        out, result = [], None
        for _ in range(repeat):
            result = None  # the last run's result is not kept alive through the next
            t, c = time.perf_counter(), _cpu()
            result = fn()
            out.append((time.perf_counter() - t, _cpu() - c))
        return out, result

    def by_pod() -> Any:
        query = recommend.allocation_query(window)
        return allocate(svc.store, query, price_table(prices, nodes), rules)

    base, report = timed(lambda: svc.cost(window=span))
    alloc, allocation = timed(by_pod)
    rows = allocation.rows
    rollup, tables = timed(lambda: engine.holdings(svc.store, window.start_ms, window.end_ms, rows))
    whole, facts = timed(lambda: recommend.facts(window))
    svc.close()

    hours = sum(len(h.hours) for h in facts.holdings)
    print(f"facts: {len(facts.holdings):,} holdings, {hours:,} holding-hours, "
          f"{len(facts.offers):,} offers, {len(facts.spend):,} unallocated lines; total "
          f"spend {facts.total_spend:,.2f} (cost --by team: {report.asset_cost:,.2f})")  # fmt: skip
    assert tables.hours.num_rows == hours
    measured = {
        "cost --by team (one allocation)": base,
        "allocation by team,namespace,workload,node": alloc,
        "engine roll-up + money (store/recommend)": rollup,
        "Recommend.facts (all of it)": whole,
    }
    floor = statistics.median(w for w, _ in base)
    print(f"in process, {repeat} runs each ({os.cpu_count()} CPUs here):")
    print(f"{'':42} {'median s':>9} {'min s':>7} {'cpu s':>6} {'x one allocation':>17}")
    for name, runs in measured.items():
        med = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:42} {med:9.3f} {min(w for w, _ in runs):7.3f} {cpu:6.2f} "
              f"{med / floor:17.1f}")  # fmt: skip


def _cpu() -> float:
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def whole_command(db: str, start: datetime, end: datetime, runs: int, tmp: str) -> None:
    """`aifinops optimize` over the window, each run a fresh process on a fresh copy."""
    span = f"{start.isoformat()},{end.isoformat()}"
    copy, out = Path(tmp) / "optimize.duckdb", Path(tmp) / "optimize.json"
    print(f"whole command: aifinops --db COPY optimize --window {span} --format json")
    print(f"{'run':>4} {'wall s':>8} {'cpu s':>7} {'cores':>6} {'peak MB':>8} {'findings':>9}")
    for i in range(runs):
        shutil.copyfile(db, copy)
        argv = [sys.executable, "-m", "aifinops", "--db", str(copy), "optimize",
                "--window", span, "--format", "json"]  # fmt: skip
        with out.open("wb") as sink:
            began = time.perf_counter()
            child = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL)
            _, status, use = os.wait4(child.pid, 0)  # this child's own CPU time and peak
            wall = time.perf_counter() - began
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"aifinops optimize failed: {' '.join(argv)}")
        found = len(json.loads(out.read_bytes())["findings"])
        cpu, peak = use.ru_utime + use.ru_stime, use.ru_maxrss / 1024
        print(f"{i + 1:>4} {wall:8.2f} {cpu:7.2f} {cpu / wall:6.1f} {peak:8.0f} {found:9,}")
        copy.unlink()


if __name__ == "__main__":
    main()
