"""Shared fixtures: a service on a fresh DuckDB file, and builders of hand-made facts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aifinops.config import load_settings
from aifinops.service import Service
from aifinops.sources import facts

H100 = Path(__file__).resolve().parents[1] / "src" / "aifinops" / "data" / "h100-run-a"


def shared_data(relative: str) -> Path:
    """A file of the workplace's shared data: `$AIFINOPS_SHARED_DATA`, else `../shared/data`
    beside the checkout, else `/work/shared/data`. Skipped where absent, failed in CI."""
    return _shared("data", relative, "AIFINOPS_SHARED_DATA")


def shared_tool(name: str) -> Path:
    """A script of the workplace's shared tools (`../shared/tools`), e.g. focus-validate."""
    return _shared("tools", name, "AIFINOPS_SHARED_TOOLS")


def _shared(kind: str, relative: str, env: str) -> Path:
    import os

    roots = [os.environ.get(env, "")]
    roots += [str(Path(__file__).resolve().parents[2] / "shared" / kind), f"/work/shared/{kind}"]
    for root in filter(None, roots):
        path = Path(root) / relative
        if path.exists():
            return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"shared {kind} {relative} not found under {roots}")
    pytest.skip(f"shared {kind} {relative} not here")


T0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z in ms
MIN = 60_000
HOUR = 3_600_000


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def build(config: dict[str, Any] | None = None, name: str = "store.duckdb") -> Service:
        import yaml

        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config or {}))
        svc = Service(load_settings(cfg, env={}, flags={"db": str(tmp_path / name)}))
        made.append(svc)
        return svc

    yield build
    for svc in made:
        svc.close()


def sample(
    ts_ms: int,
    node: str,
    gpu: str,
    holders: Sequence[tuple[str | None, float, float, float]],
    dur_ms: int = MIN,
) -> list[dict[str, Any]]:
    """One device sample: holders are (workload, request share, usage share, busy fraction
    of the whole device). Shares are given exactly as the test means them."""
    return [
        {
            "ts": ts_ms,
            "node": node,
            "gpu": gpu,
            "w": w,
            "req": round(dur_ms * req * 1_000_000),
            "use": round(dur_ms * use * 1_000_000),
            "used": round(dur_ms * busy * 1_000_000),
        }
        for w, req, use, busy in holders
    ]


def load_facts(
    svc: Service,
    nodes: Sequence[dict[str, Any]],
    workloads: Sequence[dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    namespaces: Sequence[dict[str, Any]] = (),
) -> None:
    store = svc.store
    store.upsert_arrow("nodes", facts.rows_table(list(nodes), facts.NODES), "node_id")
    if workloads:
        store.upsert_arrow(
            "workloads", facts.rows_table(list(workloads), facts.WORKLOADS), "workload_id"
        )
    if namespaces:
        store.upsert_arrow(
            "namespaces", facts.rows_table(list(namespaces), facts.NAMESPACES), "namespace"
        )
    if samples:
        table = facts.usage_table(
            np.array([s["ts"] for s in samples], dtype=np.int64),
            [s["node"] for s in samples],
            [s["gpu"] for s in samples],
            [s["w"] for s in samples],
            np.array([s["req"] for s in samples], dtype=np.int64),
            np.array([s["use"] for s in samples], dtype=np.int64),
            np.array([s["used"] for s in samples], dtype=np.int64),
        )
        store.write_usage(table)


def window(hours: int = 1, start: int = T0) -> str:
    from aifinops.core.windows import from_ms

    return f"{from_ms(start).isoformat()},{from_ms(start + hours * HOUR).isoformat()}"


class Served:
    """A real HTTP server on a free loopback port. `routes` maps a path to a list of
    (status, body) answers given in turn (the last one repeats); `hits` counts requests.
    A request with `watch=true` looks up `PATH?watch`, one with `continue=` `PATH?continue`."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.routes: dict[str, list[tuple[int, bytes]]] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.bodies: list[tuple[str, bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                outer.requests.append((self.path, dict(self.headers)))
                if "watch=true" in query or "watch=True" in query or "watch=1" in query:
                    path += "?watch"
                elif "continue=" in query:
                    path += "?continue"
                answers = outer.routes.get(path, [(404, b"not found")])
                n = outer.hits.get(path, 0)
                outer.hits[path] = n + 1
                status, body = answers[min(n, len(answers) - 1)]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append((self.path, self.rfile.read(length)))
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served()
    yield server
    server.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_binary(*names: str) -> None:
    """Skip where a service binary is missing outside CI; in CI a missing one fails."""
    import os
    import shutil

    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class PrometheusServer:
    """A real Prometheus whose TSDB is filled from OpenMetrics text by promtool."""

    def __init__(self, workdir: Path, openmetrics: str | Path):
        import subprocess
        import time
        import urllib.request

        need_binary("prometheus", "promtool")
        workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(openmetrics, Path):
            data = openmetrics
        else:
            data = workdir / "data.om"
            text = openmetrics if openmetrics.endswith("# EOF\n") else openmetrics + "# EOF\n"
            data.write_text(text)
        tsdb = workdir / "tsdb"
        made = subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, made.stderr[-2000:]
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\n")
        self.port = free_port()
        self.log = (workdir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(
                    "prometheus did not start: " + (workdir / "prometheus.log").read_text()[-2000:]
                )
            time.sleep(0.2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
        self.log.close()


def dec(text: str | None) -> Decimal:
    """A money field of a bill as Decimal: empty and the literal NULL are 0."""
    return Decimal(text) if text not in (None, "", "NULL") else Decimal(0)


def billed_by(svc: Any, by: str) -> dict[tuple[Any, ...], Decimal]:
    """`bills summary --by BY` as {(key values..., currency): exact billed cost}."""
    return {
        (*r["key"].values(), r["currency"]): Decimal(r["_billed"])
        for r in svc.bills_summary(by=by.split(","))
    }
