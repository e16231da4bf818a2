"""Admission webhook benchmark: `POST /api/v1/admission` answered by a Gatekeeper holding
GATES budgets, served by uvicorn over HTTPS (a self-signed certificate from the openssl CLI)
on 127.0.0.1 in a child process, asked REQUESTS times over one keep-alive connection.

The reviews are real ones (tests/data/admission): a 1-GPU pod of team ml, in scope of a
throttled budget with room (allowed, counted), alternating with a 1-GPU pod of team
vision, in scope of an active block (denied). The baselines, measured in the same run:
`GET /health` on the same server (the HTTP stack's floor) and `decide` called in process
(the decision's own time). Target: p99 under 50 ms.

    python bench/admission.py                      # 2,000 requests, 50 gates
    python bench/admission.py --requests 500 --plain
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REVIEWS = ROOT / "tests" / "data" / "admission"
NOW_MS = 1_795_392_000_000


def gates(count: int) -> Any:
    """`count` gates: team ml throttled with room, team vision blocked, the rest on other
    teams (half active), so every review is matched against all of them."""
    from aifinops.core.admission import AdmissionState, Gate

    def gate(name: str, team: str, action: str, active: bool, cap: int | None) -> Gate:
        return Gate(name, {"team": frozenset({team})}, action, "enforce", active,  # type: ignore[arg-type]
                    Decimal("10250.00"), Decimal("10000.00"), "USD", cap, 3)  # fmt: skip

    out = [gate("ml", "ml", "throttle", True, 10**9), gate("vision", "vision", "block", True, None)]
    out += [gate(f"team-{i}", f"team-{i}", "block", i % 2 == 0, None) for i in range(count - 2)]
    return AdmissionState(tuple(out), NOW_MS)


def make_app(count: int) -> Any:
    from fastapi import FastAPI

    from aifinops.api.admission import Gatekeeper, admission_router
    from aifinops.core.admission import AdmissionConfig
    from aifinops.core.attribution import AttributionRules

    keeper = Gatekeeper(AdmissionConfig(), AttributionRules(), clock=lambda: NOW_MS / 1000)
    keeper.refresh(gates(count))
    app = FastAPI()
    app.include_router(admission_router(keeper))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(port: int, count: int, cert: str | None, key: str | None) -> None:
    import uvicorn

    tls = {"ssl_certfile": cert, "ssl_keyfile": key} if cert else {}
    uvicorn.run(make_app(count), host="127.0.0.1", port=port, log_level="warning", **tls)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def figures(seconds: list[float], wall: float) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max_ms": ms[-1],
        "req_s": len(ms) / wall,
    }


def load(client: Any, method: str, url: str, bodies: list[bytes], n: int) -> dict[str, float]:
    headers = {"Content-Type": "application/json"}
    for i in range(min(100, n)):  # warm-up: imports, the first TLS session, caches
        client.request(method, url, content=bodies[i % len(bodies)] if bodies else None,
                       headers=headers)  # fmt: skip
    took = []
    began = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        r = client.request(method, url, content=bodies[i % len(bodies)] if bodies else None,
                           headers=headers)  # fmt: skip
        took.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return figures(took, time.perf_counter() - began)


def bare(count: int, n: int) -> dict[str, float]:
    """`decide` in process: the decision's own time."""
    from aifinops.core.admission import AdmissionConfig, decide
    from aifinops.core.attribution import AttributionRules

    state, config, rules = gates(count), AdmissionConfig(), AttributionRules()
    reviews = [json.loads((REVIEWS / f"{n}.json").read_text()) for n in ("gpu-ml-1", "gpu-vision")]
    took = []
    began = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        decide(reviews[i % 2], state, config, rules, NOW_MS, {"ml": i})
        took.append(time.perf_counter() - t)
    return figures(took, time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--gates", type=int, default=50)
    parser.add_argument("--plain", action="store_true", help="HTTP instead of HTTPS")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child: a port
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.gates, args.cert, args.key)
        return

    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        port, child = free_port(), [sys.executable, __file__, "--gates", str(args.gates)]
        verify: Any = False
        if not args.plain:
            cert, key = f"{tmp}/tls.crt", f"{tmp}/tls.key"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)  # fmt: skip
            child += ["--cert", cert, "--key", key]
            verify = ssl.create_default_context(cafile=cert)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen([*child, "--serve", str(port)], env=env)
        base = f"{'http' if args.plain else 'https'}://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
            bodies = [(REVIEWS / f"{n}.json").read_bytes() for n in ("gpu-ml-1", "gpu-vision")]
            with httpx.Client(verify=verify, timeout=30) as client:
                review = load(client, "POST", base + "/api/v1/admission", bodies, args.requests)
                health = load(client, "GET", base + "/health", [], args.requests)
        finally:
            proc.terminate()
            proc.wait(30)
    floor = bare(args.gates, args.requests)
    scheme = "HTTP" if args.plain else "HTTPS"
    print(f"admission webhook: {args.gates} gates, {args.requests} requests each, one "
          f"keep-alive {scheme} connection, 127.0.0.1")  # fmt: skip
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'req/s':>9}")
    for name, f in (("POST /api/v1/admission", review), ("GET /health (baseline)", health),
                    ("decide() in process (baseline)", floor)):  # fmt: skip
        print(f"{name:<34}{f['p50_ms']:>9.3f}{f['p99_ms']:>9.3f}{f['max_ms']:>9.3f}"
              f"{f['req_s']:>9.0f}")  # fmt: skip
    print(f"target p99 < 50 ms: {'met' if review['p99_ms'] < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
