"""Start-up, end to end: whole `python -m aifinops` processes as a user runs them (`--help`,
`cost --by team` on a small demo store, `sources status`), N runs each, median and best.

    python bench/startup.py [--runs 7] [--workdir /tmp/aifinops-startup]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aifinops", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--days", type=int, default=2, help="days of the demo store")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/aifinops-startup"))
    opts = parser.parse_args()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    db = opts.workdir / "demo.duckdb"
    if not db.exists():
        demo = ["--db", str(db), "demo", "--days", str(opts.days)]
        subprocess.run([sys.executable, "-m", "aifinops", *demo], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    commands = {
        "--help": ["--help"],
        "cost --by team": ["--db", str(db), "cost", "--by", "team"],
        "sources status": ["--db", str(db), "sources", "status"],
    }
    size = db.stat().st_size
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {opts.runs} runs each "
          f"(after one warm-up), demo store of {opts.days} days ({size:,} bytes)")  # fmt: skip
    print(f"{'command':<18} {'median':>8} {'best':>8}")
    for name, args in commands.items():
        timed(args, opts.workdir)  # warm the page cache and the bytecode
        times = [timed(args, opts.workdir) for _ in range(opts.runs)]
        print(f"{name:<18} {statistics.median(times):>7.3f}s {min(times):>7.3f}s")


if __name__ == "__main__":
    main()
