"""API benchmark: `aifinops serve` on a store of N GPUs x D days (1-minute samples, ending
now), loaded with wrk (Debian's `wrk`) from this machine, on 127.0.0.1 only.

For each route: the first request (cold: the engine's time), then wrk for DURATION seconds
with CONNECTIONS connections (requests/s, p50/p99 latency). The baselines, measured in the
same run: the bare query (the same `Service.cost` in process, the engine's own time) and
`/health` under wrk (the HTTP stack's ceiling on this machine, no store involved). Then the
time of a `/metrics` scrape, cold and warm.

    python bench/api.py --gpus 1000 --days 30
    python bench/api.py --gpus 50 --days 3 --duration 5     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROUTES = {
    "costs/summary 30d": "/api/v1/costs/summary?window=30d",
    "allocation 7d by namespace": "/api/v1/allocation?window=7d&aggregate=namespace",
}


def build(db: str, gpus: int, days: int, seed: int) -> dict[str, float]:
    """bench/allocation.py's fleet, ending at the current hour (so `30d` windows hold it)."""
    from allocation import build as build_fleet  # bench/ is on the path of its scripts

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return build_fleet(db, gpus, days, seed, start=hour - timedelta(days=days))


def bare(db: str) -> dict[str, float]:
    """The engine's own time for each route's question, in process (the bare query)."""
    from aifinops.config import load_settings
    from aifinops.service import Service

    svc = Service(load_settings(None, env={}, flags={"db": db}), read_only=True)
    out = {}
    for name, kw in (
        ("costs/summary 30d", {"last": "30d", "by": ["team"]}),
        ("allocation 7d by namespace", {"last": "7d", "by": ["namespace"]}),
    ):
        began = time.perf_counter()
        svc.cost(**kw)
        out[name] = time.perf_counter() - began
    return out


def fetch(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        response.read()
    return time.perf_counter() - began


def wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert rps, out
    return {
        "rps": float(rps.group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per route")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--db", help="keep the store here (default: a temporary file)")
    ap.add_argument("--measure", choices=["build", "bare"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure == "build":
        print(json.dumps(build(args.db, args.gpus, args.days, args.seed)))
        return
    if args.measure == "bare":
        print(json.dumps(bare(args.db)))
        return
    if shutil.which("wrk") is None:
        sys.exit("bench/api.py needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "api.duckdb")

        def child(what: str) -> dict[str, float]:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    what,
                    "--db",
                    db,
                    "--gpus",
                    str(args.gpus),
                    "--days",
                    str(args.days),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

        if not Path(db).exists():
            built = child("build")
            print(
                f"store: {args.gpus} GPUs x {args.days} days, {built['rows']:,} sample rows "
                f"(built in {built['build_s']:.0f} s)"
            )
        engine = child("bare")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aifinops",
                "--db",
                db,
                "serve",
                "--no-jobs",
                "--port",
                str(port),
            ],
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    fetch(base + "/health")
                    break
                except OSError:
                    assert time.monotonic() < deadline, "serve did not start"
                    time.sleep(0.2)
            # the server works out /metrics in the background once it starts: let it finish
            metrics_job: dict[str, object] = {}
            while not metrics_job.get("runs"):
                time.sleep(0.5)
                with urllib.request.urlopen(base + "/api/v1/jobs", timeout=60) as response:
                    jobs = json.loads(response.read())["jobs"]
                metrics_job = next(j for j in jobs if j["name"] == "metrics")
            print(
                f"{os.cpu_count()} CPUs; wrk -t2 -c{args.connections} -d{args.duration}s "
                "on 127.0.0.1; aifinops serve as a user runs it (one process)"
            )
            health = wrk(base + "/health", args.duration, args.connections)
            print(
                f"{'route':<28} {'bare query':>10} {'first':>8} {'req/s':>8} {'p50 ms':>7} "
                f"{'p99 ms':>7} {'non-2xx':>7}"
            )
            print(
                f"{'/health (HTTP ceiling)':<28} {'-':>10} {'-':>8} {health['rps']:>8.0f} "
                f"{health['p50_ms']:>7.2f} {health['p99_ms']:>7.2f} {health['non_2xx']:>7}"
            )
            for name, path in ROUTES.items():
                first = fetch(base + path)
                got = wrk(base + path, args.duration, args.connections)
                print(
                    f"{name:<28} {engine[name]:>9.2f}s {first:>7.2f}s {got['rps']:>8.0f} "
                    f"{got['p50_ms']:>7.2f} {got['p99_ms']:>7.2f} {got['non_2xx']:>7}"
                )
            first = fetch(base + "/metrics")
            again = min(fetch(base + "/metrics") for _ in range(5))
            print(
                f"/metrics: worked out in the background in "
                f"{metrics_job['last_duration_seconds']} s at start; first scrape "
                f"{first * 1000:.1f} ms, then {again * 1000:.1f} ms"
            )
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
