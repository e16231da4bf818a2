"""Prometheus as a source, against a real Prometheus server filled by promtool.

The server's data is built from the real H100 capture: DCGM-style GPU series with the pod
labels of whoever held the GPU each second, kube-state-metrics series for those pods and the
node. Costs pulled through Prometheus must equal the costs from the capture's own files.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifinops.core.windows import from_ms
from aifinops.errors import InputError
from aifinops.sources.capture import CAPTURE_HOST, owners_from_events
from aifinops.sources.prometheus import PromClient, escape, selector
from tests.conftest import H100, PrometheusServer, Served, free_port

NS = "lab"
PRICES = {"prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": 4.00}}}


def _labels(d: dict[str, str]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in sorted(d.items()))


def capture_openmetrics(file_svc: Any) -> tuple[str, int, int, int]:
    """OpenMetrics text of what the file ingest saw, one point per second, and its span."""
    rows = file_svc.store.raw(
        "SELECT ts_ms, gpu_id, workload_id, held_req, used FROM gpu_usage ORDER BY ts_ms"
    )
    by_ts: dict[int, list[tuple[str, str | None, float, float]]] = defaultdict(list)
    for ts, gpu, wid, held, used in rows:
        by_ts[ts].append((gpu, wid, float(held), float(used)))
    util: dict[str | None, list[tuple[int, float]]] = defaultdict(list)
    alive: dict[str, list[int]] = defaultdict(list)
    seconds: set[int] = set()
    uuid = ""
    for ts in sorted(by_ts):
        second = ts // 1000
        if second in seconds:
            continue
        seconds.add(second)
        parts = by_ts[ts]
        uuid = parts[0][0]
        duration = sum(p[2] for p in parts)
        busy = sum(p[3] for p in parts) / duration * 100
        holders = sorted({p[1] for p in parts if p[1]})
        for wid in holders or [None]:
            util[wid].append((second, round(busy, 3)))
            if wid:
                alive[wid].append(second)
    labels_of = {
        r[0]: dict(r[1]) for r in file_svc.store.raw("SELECT workload_id, labels FROM workloads")
    }
    gpu = {"gpu": "0", "UUID": uuid, "modelName": "NVIDIA H100 80GB HBM3"}
    gpu["Hostname"] = CAPTURE_HOST
    out = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    for wid, points in util.items():
        lab = dict(gpu)
        if wid:
            lab |= {"namespace": wid.split("/")[0], "pod": wid.split("/")[1], "container": "main"}
        out += [f"DCGM_FI_DEV_GPU_UTIL{{{_labels(lab)}}} {v} {t}" for t, v in points]
    out.append("# TYPE kube_pod_info gauge")
    for wid, secs in alive.items():
        ns, pod = wid.split("/")
        lab = {"namespace": ns, "pod": pod, "node": CAPTURE_HOST, "created_by_kind": "Job"}
        lab["created_by_name"] = pod
        out += [f"kube_pod_info{{{_labels(lab)}}} 1 {t}" for t in secs]
    out.append("# TYPE kube_pod_labels gauge")
    for wid, secs in alive.items():
        ns, pod = wid.split("/")
        lab = {"namespace": ns, "pod": pod}
        lab |= {"label_" + k.replace("-", "_"): v for k, v in labels_of[wid].items()}
        out += [f"kube_pod_labels{{{_labels(lab)}}} 1 {t}" for t in secs]
    # vLLM-style counters of the two serving pods, from the true request log: every second
    # from the worker's start, the totals of the requests finished by then
    events = [json.loads(x) for x in (H100 / "workload_events.jsonl").read_text().splitlines()]
    for name, field in (
        ("vllm:request_success_total", None),
        ("vllm:prompt_tokens_total", "prompt_tokens"),
        ("vllm:generation_tokens_total", "completion_tokens"),
    ):
        out.append(f"# TYPE {name.removesuffix('_total')} counter")
        for pod in ("llm-serve-7d9f4", "chat-api-5c6d8"):
            begin = next(e["ts"] for e in events if e.get("pod") == pod)
            reqs = [e for e in events if e["event"] == "request" and e["pod"] == pod]
            lab = {"namespace": NS, "pod": pod, "model_name": reqs[0]["model"]}
            if field is None:
                lab["finished_reason"] = "stop"
            for t in range(int(begin), max(seconds) + 1):
                done = [r for r in reqs if r["end"] <= t]
                value = len(done) if field is None else sum(r[field] for r in done)
                out.append(f"{name}{{{_labels(lab)}}} {value} {t}")
    out.append("# TYPE kube_node_labels gauge")
    first, last = min(seconds), max(seconds)
    node = {"node": CAPTURE_HOST, "label_nvidia_com_gpu_product": "NVIDIA-H100-80GB-HBM3"}
    out += [f"kube_node_labels{{{_labels(node)}}} 1 {t}" for t in range(first, last + 1, 15)]
    out.append("# EOF")
    return "\n".join(out) + "\n", first * 1000, (last + 1) * 1000, len(seconds)


@contextmanager
def capture_prometheus(tmp: Path) -> Iterator[dict[str, Any]]:
    """A real Prometheus holding the capture's series, and the file ingest they came from."""
    from aifinops.config import load_settings
    from aifinops.service import Service

    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(PRICES))
    file_svc = Service(load_settings(cfg, env={}, flags={"db": str(tmp / "files.duckdb")}))
    file_svc.ingest_nvidia_smi(
        H100, host=CAPTURE_HOST, owners=owners_from_events(H100 / "workload_events.jsonl", NS)
    )
    text, start, end, points = capture_openmetrics(file_svc)
    server = PrometheusServer(tmp / "server", text)
    try:
        yield {"url": server.url, "files": file_svc, "start": start, "end": end, "points": points}
    finally:
        server.close()
        file_svc.close()


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with capture_prometheus(tmp_path_factory.mktemp("prom")) as served:
        yield served


def _window(start: int, end: int) -> str:
    return f"{from_ms(start).isoformat()},{from_ms(end).isoformat()}"


def _costs(svc: Any, window: str, by: str) -> dict[str, tuple[float, float]]:
    report = svc.cost(window=window, by=[by])
    return {r.key[by]: (float(r.gpu_hours), float(r.total_cost)) for r in report.rows}


def test_costs_through_prometheus_equal_the_files(prom: dict[str, Any], make_service: Any) -> None:
    svc = make_service(PRICES)
    window = _window(prom["start"], prom["end"])
    result = svc.ingest_prometheus(prom["url"], window=window, step="1s")
    assert result.status == "loaded"
    pods = {r[0] for r in svc.store.raw("SELECT workload_id FROM workloads")}
    names = ("llm-serve-7d9f4", "pretrain-job-0", "jupyter-alice-0", "chat-api-5c6d8")
    assert pods == {f"{NS}/{p}" for p in (*names, "finetune-lora-1")}
    for by in ("workload", "team"):
        ours = _costs(svc, window, by)
        files = _costs(prom["files"], window, by)
        assert set(ours) == set(files)
        for key, (hours, cost) in files.items():
            # whole-second points against nvidia-smi's ~1.002 s samples, whose first and
            # last may be partly held: each pod within 2 s, idle (which takes every pod's
            # edges and the 0.2 % clock drift) within 2 s per pod; all equal to the cent
            assert ours[key][1] == pytest.approx(cost, abs=0.01), key
            slack = (2 * len(pods) if key == "__idle__" else 2) / 3600
            assert ours[key][0] == pytest.approx(hours, abs=slack), key
        # one second per point written, and every point read back
        assert sum(h for h, _ in ours.values()) == pytest.approx(prom["points"] / 3600)
    team_of = dict(svc.store.raw("SELECT workload_id, labels['team'] FROM workloads"))
    assert team_of[f"{NS}/pretrain-job-0"] == "research"
    node = svc.store.raw("SELECT gpu_model, gpu_count, util_signal FROM nodes")
    assert node == [("NVIDIA-H100-80GB-HBM3", 1, "DCGM_FI_DEV_GPU_UTIL")]
    again = svc.ingest_prometheus(prom["url"], window=window, step="1s")
    assert again.status == "unchanged"
    # the serving pods' vLLM counters came through Prometheus too: what the log says
    units = {
        r.key["model"]: r.units
        for r in svc.cost(window=window, by=["model"], unit="tokens").rows
        if r.units is not None
    }
    medium = units["gpt2-medium-randinit"]
    assert (medium.requests, medium.prompt_tokens, medium.generation_tokens) == (
        385,
        78694,
        43226,
    )


def test_chunked_pull_equals_one_request(prom: dict[str, Any]) -> None:
    start, end = prom["start"], prom["end"]
    one = PromClient(prom["url"]).query_range("DCGM_FI_DEV_GPU_UTIL", start, end, 1000)
    chunked = PromClient(prom["url"], max_points=37)
    many = chunked.query_range("DCGM_FI_DEV_GPU_UTIL", start, end, 1000)
    assert many.requests == -(-(end - start) // (37 * 1000)) > 5
    key = lambda s: sorted(s.labels.items())  # noqa: E731
    assert sorted(map(key, one.series)) == sorted(map(key, many.series))
    points = {tuple(key(s)): s.points for s in one.series}
    for s in many.series:
        assert s.points == points[tuple(key(s))]  # no point twice at chunk edges, none lost
    assert one.gaps == many.gaps == []


def test_escaped_label_values_cannot_change_a_query(prom: dict[str, Any]) -> None:
    evil = 'x"} or vector(1) or {__name__="y'
    q = selector("kube_pod_labels", {"label_team": evil})
    assert q == 'kube_pod_labels{label_team="x\\"} or vector(1) or {__name__=\\"y"}'
    got = PromClient(prom["url"]).query_range(q, prom["start"], prom["end"], 1000)
    assert got.series == [] and got.gaps == []  # matched nothing; injected nothing


def test_gaps_are_reported_not_zero(prom: dict[str, Any], make_service: Any) -> None:
    svc = make_service(PRICES)
    # ten minutes before the capture plus the capture: the first ten minutes have no data
    start = prom["start"] - 600_000
    result = svc.ingest_prometheus(prom["url"], window=_window(start, prom["end"]), step="1s")
    gaps = [n for n in result.notes if n.startswith("gap ")]
    assert gaps and "no GPU samples (data missing)" in gaps[0]
    assert gaps[0].startswith(f"gap {from_ms(start).isoformat()} .. ")
    assert svc.store.raw("SELECT min(ts_ms) FROM gpu_usage") == [(prom["start"],)]


def test_a_failing_chunk_is_a_gap_and_the_rest_lands(served: Served) -> None:
    ok = (
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":'
        b'{"__name__":"m","gpu":"0"},"values":[[1795428000,"1"],[1795428060,"2"]]}]}}'
    )
    served.routes["/api/v1/query_range"] = [(200, ok), (500, b"{}"), (500, b"{}"), (500, b"{}")]
    client = PromClient(served.url(""), max_points=2, retries=2, sleep=lambda s: None)
    got = client.query_range("m", 1795428000000, 1795428240000, 60_000)
    assert got.series[0].points == [(1795428000000, 1.0), (1795428060000, 2.0)]
    assert len(got.gaps) == 1 and "HTTP 500" in got.gaps[0].what
    assert (got.gaps[0].start_ms, got.gaps[0].end_ms) == (1795428120000, 1795428240000)
    assert served.hits["/api/v1/query_range"] == 4  # 1 + (1 try + 2 retries)


def test_dead_prometheus_is_a_clear_error(make_service: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    svc = make_service()
    with pytest.raises(InputError, match="Prometheus API not usable") as info:
        svc.ingest_prometheus(url, window="2026-11-23T00:00:00Z,2026-11-23T01:00:00Z")
    assert info.value.where == url


def test_prometheus_query_errors_name_the_query(served: Served) -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"parse error at char 3"}'
    served.routes["/api/v1/query_range"] = [(400, body)]
    got = PromClient(served.url("")).query_range("m{", 0, 60_000, 60_000)
    assert got.gaps and "parse error at char 3" in got.gaps[0].what and "'m{'" in got.gaps[0].what
    assert served.hits["/api/v1/query_range"] == 1


def test_cli_help_lists_prometheus(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "aifinops", "ingest", "prometheus", "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "--window" in out.stdout and "--step" in out.stdout
