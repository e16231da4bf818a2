"""How fast the dashboard's pages load on the demo's store, from a real `aifinops serve`.

Each page (HTML) and its JSON twin is asked for `--rounds` times after the server has
warmed its pages (what a person opening the dashboard meets), and once cold (the first
request for a filter nobody asked for before: a window of 30 days). The baseline, in the
same run, is `/health`: what the HTTP round trip costs with no work behind it.

    python bench/dashboard.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PAGES = ("/", "/costs", "/gpus", "/teams", "/units", "/budgets", "/recommendations",
         "/bills", "/sources")  # fmt: skip


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    answer = client.get(path)
    took = time.perf_counter() - started
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.duckdb"
        subprocess.run([sys.executable, "-m", "aifinops", "--db", str(db), "demo"], check=True,
                       capture_output=True, cwd=tmp)  # fmt: skip
        port = _port()
        server = subprocess.Popen(
            [sys.executable, "-m", "aifinops", "--db", str(db), "--config",
             str(Path(tmp) / "demo.yaml"), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        client.get("/health")
                        break
                    except httpx.HTTPError:
                        assert time.monotonic() < deadline, "the server did not start"
                        time.sleep(0.2)
                started = time.perf_counter()
                while True:  # the jobs' first runs and the pages' warming settle
                    times = [_timed(client, p) for p in PAGES]
                    if max(times) < 0.5 or time.perf_counter() - started > 180:
                        break
                    time.sleep(2)
                print(f"warmed after {time.perf_counter() - started:.1f} s")
                base = statistics.median(_timed(client, "/health") for _ in range(20))
                print(f"{'page':<18} {'html ms':>8} {'json ms':>8} {'x /health':>10}")
                for path in PAGES:
                    html = statistics.median(_timed(client, path) for _ in range(args.rounds))
                    twin = "/index.json" if path == "/" else f"{path}.json"
                    data = statistics.median(_timed(client, twin) for _ in range(args.rounds))
                    print(f"{path:<18} {html * 1000:8.1f} {data * 1000:8.1f} "
                          f"{html / base:10.1f}")  # fmt: skip
                print(f"{'/health':<18} {base * 1000:8.1f}")
                for path in ("/costs?window=30d", "/teams?window=30d", "/gpus?window=30d"):
                    print(f"cold {path:<22} {_timed(client, path) * 1000:8.1f} ms")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
