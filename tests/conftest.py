"""Shared fixtures: a service on a fresh DuckDB file, builders of hand-made facts, real
servers (HTTP, Prometheus), and the real H100 capture read from its raw files."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from statistics import median
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


ENGINES = ("duckdb", "postgresql")
# the PostgreSQL every engine-parametrised test runs on (127.0.0.1:5432 here and in CI)
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `engines` runs once per store engine: its `make_service` (and
    `store_url`) give a DuckDB file, then a schema of its own on PostgreSQL."""
    if metafunc.definition.get_closest_marker("engines") and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The store engine of `make_service`: the test's parameter, else
    $AIFINOPS_TEST_ENGINE (a whole run on PostgreSQL), else DuckDB."""
    import os

    default = os.environ.get("AIFINOPS_TEST_ENGINE", "duckdb")
    return str(getattr(request, "param", default))


class PostgresSchemas:
    """Fresh PostgreSQL schemas for one test (`?schema=` URLs), dropped after it."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def url(self, hint: str = "t") -> str:
        import os
        import re
        import uuid

        try:
            import psycopg

            psycopg.connect(PG_URL, connect_timeout=5).close()
        except Exception as error:
            message = f"PostgreSQL at {PG_URL} is not reachable: {error}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        name = f"aifinops_{re.sub(r'[^a-z0-9]', '', hint.lower())[:20]}_{uuid.uuid4().hex[:10]}"
        self.made.append(name)
        return f"{PG_URL}?schema={name}"

    def drop(self) -> None:
        if not self.made:
            return
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as con:
            for name in self.made:
                con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_schemas() -> Iterator[PostgresSchemas]:
    schemas = PostgresSchemas()
    yield schemas
    schemas.drop()


@pytest.fixture
def store_url(engine: str, tmp_path: Path, pg_schemas: PostgresSchemas) -> Callable[[str], str]:
    """The `--db` of a fresh store named `name`, on the test's engine."""

    def url(name: str = "store.duckdb") -> str:
        return pg_schemas.url(name) if engine == "postgresql" else str(tmp_path / name)

    return url


@pytest.fixture
def make_service(
    tmp_path: Path, store_url: Callable[[str], str]
) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []
    urls: dict[str, str] = {}

    def build(
        config: dict[str, Any] | None = None, name: str = "store.duckdb", **time: Any
    ) -> Service:
        """A service on a fresh store (one per `name`; the same name, the same store);
        `clock=` and `sleep=` put time in the test's hands."""
        import yaml

        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config or {}))
        db = urls.setdefault(name, store_url(name))
        svc = Service(load_settings(cfg, env={}, flags={"db": db}), **time)
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
        message = f"{', '.join(missing)} not installed (scripts/test-services.sh installs it)"
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


@pytest.fixture
def commitment_cur(tmp_path: Path) -> Path:
    """A CUR hour (2026-11-02 00:00-01:00) with a Savings Plan (i-1), a reservation (i-2),
    spot (i-3), the plan's recurring fee and a credit."""
    header = [
        "identity/LineItemId", "bill/PayerAccountId", "bill/BillingPeriodStartDate",
        "bill/BillingPeriodEndDate", "lineItem/UsageAccountId", "lineItem/LineItemType",
        "lineItem/UsageStartDate", "lineItem/UsageEndDate", "lineItem/ProductCode",
        "lineItem/UsageType", "lineItem/ResourceId", "lineItem/UsageAmount",
        "lineItem/CurrencyCode", "lineItem/UnblendedCost", "pricing/publicOnDemandCost",
        "savingsPlan/SavingsPlanARN", "savingsPlan/SavingsPlanEffectiveCost",
        "savingsPlan/TotalCommitmentToDate", "savingsPlan/UsedCommitment",
        "reservation/ReservationARN", "reservation/EffectiveCost",
        "resourceTags/user:team",
    ]  # fmt: skip
    p = "2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,111"
    t = "2026-11-02T00:00:00Z,2026-11-02T01:00:00Z,AmazonEC2"
    lines = [
        f"a,999,{p},SavingsPlanCoveredUsage,{t},BoxUsage:p5.48xlarge,i-1,1,USD,98.32,98.32,"
        "arn:sp,60.00,,,,,ml",
        f"b,999,{p},SavingsPlanNegation,{t},BoxUsage:p5.48xlarge,i-1,1,USD,-98.32,,arn:sp,,,,,,ml",
        f"c,999,{p},SavingsPlanRecurringFee,{t},ComputeSP:1yr,,1,USD,70.00,,arn:sp,,70.00,60.00,,,",
        f"d,999,{p},DiscountedUsage,{t},BoxUsage:g5.xlarge,i-2,1,USD,0,1.006,,,,,arn:ri,0.55,",
        f"e,999,{p},Usage,{t},SpotUsage:g5.xlarge,i-3,1,USD,0.40,1.006,,,,,,,",
        f"f,999,{p},Credit,{t},,,,USD,-5.00,,,,,,,,",
    ]
    path = tmp_path / "cur.csv"
    path.write_text(",".join(header) + "\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`aifinops ARGS...` run as a user runs it, in a directory: exit code, stdout, stderr."""

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aifinops", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


# -- the real H100 capture, read from its raw files ---------------------------------------
# Expected values of the tests over the capture are worked out from these readers, never
# from what an ingest stored.

H100_PRICE = 4.00  # per GPU-hour, the price every capture test configures


def nvidia_smi_time(text: str) -> float:
    """A timestamp of nvidia-smi's CSV (the capture's host logged in UTC), epoch seconds."""
    return datetime.strptime(text, "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


@pytest.fixture(scope="session")
def h100_events() -> list[dict[str, Any]]:
    """workload_events.jsonl: phases, which pid was which pod and team, every request."""
    lines = (H100 / "workload_events.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


@pytest.fixture(scope="session")
def h100_devices() -> list[dict[str, Any]]:
    """nvidia_smi_query_gpu.csv: one dict per device sample (time in epoch seconds, index,
    uuid, name, utilization.gpu in percent)."""
    with (H100 / "nvidia_smi_query_gpu.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, skipinitialspace=True))
    return [
        {
            "ts": nvidia_smi_time(r["timestamp"]),
            "index": r["index"],
            "uuid": r["uuid"],
            "name": r["name"],
            "util": float(r["utilization.gpu [%]"].removesuffix("%")),
        }
        for r in rows
    ]


@pytest.fixture(scope="session")
def h100_snapshots() -> dict[float, list[int]]:
    """nvidia_smi_compute_apps.csv: the pids on the GPU at each snapshot time (epoch s)."""
    snaps: dict[float, list[int]] = defaultdict(list)
    with (H100 / "nvidia_smi_compute_apps.csv").open(newline="") as fh:
        rows = list(csv.reader(fh, skipinitialspace=True))
    for row in rows[1:]:
        snaps[nvidia_smi_time(row[0])].append(int(row[2]))
    return dict(sorted(snaps.items()))


@pytest.fixture(scope="session")
def h100_request_seconds(h100_snapshots: dict[float, list[int]]) -> dict[int, float]:
    """GPU-seconds each pid held: each snapshot lasts one (median) interval, split evenly
    among the pids in it."""
    times = list(h100_snapshots)
    interval = median(b - a for a, b in itertools.pairwise(times))
    out: dict[int, float] = defaultdict(float)
    for pids in h100_snapshots.values():
        for pid in pids:
            out[pid] += interval / len(pids)
    return dict(out)


H100_NS = "lab"  # the namespace the capture's pods are given in Kubernetes-shaped series


def _labels(d: dict[str, str]) -> str:
    from aifinops.sources.telemetry.prometheus import escape

    return ",".join(f'{k}="{escape(v)}"' for k, v in sorted(d.items()))


def h100_openmetrics(
    events: list[dict[str, Any]],
    devices: list[dict[str, Any]],
    snapshots: dict[float, list[int]],
    host: str,
) -> tuple[str, int, int, int]:
    """The capture as dcgm-exporter, kube-state-metrics and vLLM, scraped every second,
    would have put it in Prometheus, as OpenMetrics text; with its span and point count.

    1. each second with a device sample (nvidia_smi_query_gpu.csv) is one point of
       DCGM_FI_DEV_GPU_UTIL at that sample's utilisation, once per pod whose pid the
       compute-apps snapshot of that second lists (`workload_events` names the pod), or
       once without pod labels when the GPU was free;
    2. kube_pod_info and kube_pod_labels (team, kind, model) at each second a pod held it;
    3. vLLM counters of the two serving pods from the request log: every second from the
       worker's start, the totals of the requests finished by then;
    4. kube_node_labels every 15 s, the GPU product as GPU Feature Discovery writes it."""
    workers = {e["pid"]: e for e in events if e["event"] == "worker_start"}
    models = {e["pid"]: e["model"] for e in events if e["event"] == "model_loaded"}
    holders = {int(t): [workers[p] for p in pids] for t, pids in snapshots.items()}
    util: dict[str | None, list[tuple[int, float]]] = defaultdict(list)
    alive: dict[str, list[int]] = defaultdict(list)
    seconds: list[int] = []
    for d in devices:
        second = int(d["ts"])
        if seconds and second == seconds[-1]:
            continue  # one point a second
        seconds.append(second)
        pods = sorted({w["pod"] for w in holders.get(second, [])})
        for pod in pods or [None]:
            util[pod].append((second, d["util"]))
        for pod in pods:
            alive[pod].append(second)
    gpu = {"gpu": devices[0]["index"], "UUID": devices[0]["uuid"], "Hostname": host}
    gpu["modelName"] = devices[0]["name"]
    out = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    for pod, points in util.items():
        lab = dict(gpu)
        if pod:
            lab |= {"namespace": H100_NS, "pod": pod, "container": "main"}
        out += [f"DCGM_FI_DEV_GPU_UTIL{{{_labels(lab)}}} {v} {t}" for t, v in points]
    by_pod = {w["pod"]: w for w in workers.values()}
    out.append("# TYPE kube_pod_info gauge")
    for pod, secs in alive.items():
        lab = {"namespace": H100_NS, "pod": pod, "node": host, "created_by_kind": "Job"}
        lab["created_by_name"] = pod
        out += [f"kube_pod_info{{{_labels(lab)}}} 1 {t}" for t in secs]
    out.append("# TYPE kube_pod_labels gauge")
    for pod, secs in alive.items():
        worker = by_pod[pod]
        lab = {"namespace": H100_NS, "pod": pod, "label_team": worker["team"]}
        lab["label_workload_kind"] = worker["kind"]
        if worker["pid"] in models:
            lab["label_model"] = models[worker["pid"]]
        out += [f"kube_pod_labels{{{_labels(lab)}}} 1 {t}" for t in secs]
    for name, field in (
        ("vllm:request_success_total", None),
        ("vllm:prompt_tokens_total", "prompt_tokens"),
        ("vllm:generation_tokens_total", "completion_tokens"),
    ):
        out.append(f"# TYPE {name.removesuffix('_total')} counter")
        for pod in ("llm-serve-7d9f4", "chat-api-5c6d8"):
            begin = by_pod[pod]["ts"]
            reqs = [e for e in events if e["event"] == "request" and e["pod"] == pod]
            lab = {"namespace": H100_NS, "pod": pod, "model_name": reqs[0]["model"]}
            if field is None:
                lab["finished_reason"] = "stop"
            for t in range(int(begin), seconds[-1] + 1):
                done = [r for r in reqs if r["end"] <= t]
                value = len(done) if field is None else sum(r[field] for r in done)
                out.append(f"{name}{{{_labels(lab)}}} {value} {t}")
    out.append("# TYPE kube_node_labels gauge")
    first, last = seconds[0], seconds[-1]
    node = {"node": host, "label_nvidia_com_gpu_product": devices[0]["name"].replace(" ", "-")}
    out += [f"kube_node_labels{{{_labels(node)}}} 1 {t}" for t in range(first, last + 1, 15)]
    out.append("# EOF")
    return "\n".join(out) + "\n", first * 1000, (last + 1) * 1000, len(seconds)


@pytest.fixture(scope="session")
def h100_prom(
    tmp_path_factory: pytest.TempPathFactory,
    h100_events: list[dict[str, Any]],
    h100_devices: list[dict[str, Any]],
    h100_snapshots: dict[float, list[int]],
) -> Iterator[dict[str, Any]]:
    """A real Prometheus holding the capture's series (`h100_openmetrics`): its URL, the
    span [start, end) of the points in ms, and the number of seconds that have a point."""
    from aifinops.demo.capture import CAPTURE_HOST

    text, start, end, points = h100_openmetrics(
        h100_events, h100_devices, h100_snapshots, CAPTURE_HOST
    )
    server = PrometheusServer(tmp_path_factory.mktemp("h100-prom"), text)
    try:
        yield {"url": server.url, "start": start, "end": end, "points": points}
    finally:
        server.close()


@pytest.fixture
def capture_service(make_service: Callable[..., Service]) -> Service:
    """A service holding the real H100 capture (nvidia-smi logs, owners from its events, in
    namespace `lab`), priced at H100_PRICE per GPU-hour."""
    from aifinops.demo.capture import CAPTURE_HOST, h100_capture_dir, owners_from_events

    svc = make_service({"prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": H100_PRICE}}})
    cap = h100_capture_dir()
    owners = owners_from_events(cap / "workload_events.jsonl", namespace=H100_NS)
    svc.ingest_nvidia_smi(cap, host=CAPTURE_HOST, owners=owners)
    return svc


# -- the node agent, replaying the capture's NVML stream ----------------------------------

NVML = Path(__file__).parent / "data" / "nvml" / "nvml_samples.jsonl"
H100_UUID = "GPU-880d8b20-7208-1c8b-3171-9a1a0239ad7f"
H100_NAMES = {H100_UUID: "NVIDIA H100 80GB HBM3"}
AGENT_HOST = "h100-lab-01"
AGENT_PODS = {  # pid -> (pod uid, pod), as the capture's workload_events name them
    732: ("6f1c2b9e-8d3a-4c5e-9f10-2a3b4c5d6e7f", "llm-serve-7d9f4"),
    937: ("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "chat-api-5c6d8"),
    938: ("11223344-5566-4788-99aa-bbccddeeff00", "finetune-lora-1"),
}


@pytest.fixture
def agent_node(tmp_path: Path) -> tuple[Path, Path]:
    """/proc/<pid>/{cgroup,status} and /etc/passwd as a node shows them: pods under
    kubepods (cgroup v2, systemd driver), the training run as Slurm job 4242, the notebook
    as user alice. Returns (proc root, passwd)."""
    root = tmp_path / "node"
    proc = root / "proc"
    for pid, (uid, _) in AGENT_PODS.items():
        d = proc / str(pid)
        d.mkdir(parents=True)
        slice_uid = uid.replace("-", "_")
        d.joinpath("cgroup").write_text(
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{slice_uid}.slice/cri-containerd-4f2a9c.scope\n"
        )
    d = proc / "817"
    d.mkdir()
    d.joinpath("cgroup").write_text(
        "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n"
    )
    d = proc / "896"
    d.mkdir()
    d.joinpath("cgroup").write_text("0::/user.slice/user-1001.slice/session-3.scope\n")
    d.joinpath("status").write_text("Name:\tpython\nUid:\t1001\t1001\t1001\t1001\n")
    passwd = root / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/sh\n")
    return proc, passwd


@pytest.fixture
def agent_service(make_service: Callable[..., Service]) -> Callable[..., Service]:
    """A service (priced H100 at H100_PRICE) that knows the capture's pods and their UIDs,
    as Kubernetes would have told it; the agent finds those UIDs in the cgroups."""

    def build(name: str = "agent.duckdb") -> Service:
        svc = make_service({"prices": {"gpu_models": {"H100": H100_PRICE}}}, name=name)
        rows = [
            {"workload_id": f"lab/{pod}", "kind": "pod", "namespace": "lab", "name": pod,
             "uid": uid, "labels": {"team": "t"}, "source": "kubernetes"}
            for uid, pod in AGENT_PODS.values()
        ]  # fmt: skip
        svc.store.upsert_arrow("workloads", facts.rows_table(rows, facts.WORKLOADS), "workload_id")
        return svc

    return build


@pytest.fixture
def run_agent(agent_node: tuple[Path, Path]) -> Callable[..., Any]:
    """Run the agent over the whole NVML replay (or `ticks` of it) on `agent_node`, spooling
    under WORKDIR/spool in segments of 50 records, storing into SVC (or posting to `server`)."""
    proc, passwd = agent_node

    def run(svc: Service, workdir: Path, ticks: int | None = None, **kw: Any) -> Any:
        return svc.agent(
            spool=workdir / "spool",
            host=AGENT_HOST,
            replay=NVML,
            gpu_names=H100_NAMES,
            ticks=ticks,
            proc_root=proc,
            passwd=passwd,
            user_teams={"alice": "data-science"},
            per_segment=50,
            sleep=False,
            **kw,
        )

    return run
