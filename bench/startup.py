"""Start-up, end to end: whole `python -m aifinops` processes as a user runs them (`--help`,
`cost --by team` on a small demo store, `sources status`, and `cost --by team` asked of a
running `aifinops serve` on the same store with `--server`), N runs each, median and best.

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
    subprocess.run(
        [sys.executable, "-m", "aifinops", *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
        subprocess.run(
            [sys.executable, "-m", "aifinops", *demo], check=True, stdout=subprocess.DEVNULL
        )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aifinops",
            "--db",
            str(db),
            "serve",
            "--no-jobs",
            "--port",
            str(port),
        ],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    commands = {
        "--help": ["--help"],
        "cost --by team": ["--db", str(db), "cost", "--by", "team"],
        "sources status": ["--db", str(db), "sources", "status"],
        "cost --by team --server": ["--server", url, "cost", "--by", "team"],
    }
    size = db.stat().st_size
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {opts.runs} runs each "
        f"(after one warm-up), demo store of {opts.days} days ({size:,} bytes)"
    )
    print(f"{'command':<24} {'median':>8} {'best':>8}")
    try:
        wait_for(url + "/health")
        for name, args in commands.items():
            timed(args, opts.workdir)  # warm the page cache and the bytecode
            times = [timed(args, opts.workdir) for _ in range(opts.runs)]
            print(f"{name:<24} {statistics.median(times):>7.3f}s {min(times):>7.3f}s")
    finally:
        server.terminate()
        server.wait(30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, seconds: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


if __name__ == "__main__":
    main()
