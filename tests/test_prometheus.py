"""Prometheus as a source, against a real Prometheus server filled by promtool.

The server's data is built from the real H100 capture's raw files (`h100_openmetrics`):
DCGM-style GPU series with the pod labels of whoever held the GPU each second,
kube-state-metrics series for those pods and the node, vLLM counters from the request log.
Costs pulled through Prometheus must equal the costs worked out from those raw files.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.model import IDLE
from aifinops.core.windows import from_ms
from aifinops.errors import InputError
from aifinops.sources.telemetry.prometheus import PromClient, selector
from tests.conftest import H100_NS, H100_PRICE, Served, free_port

PRICES = {"prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": H100_PRICE}}}


def _window(start: int, end: int) -> str:
    return f"{from_ms(start).isoformat()},{from_ms(end).isoformat()}"


def _costs(svc: Any, window: str, by: str) -> dict[str, tuple[float, float]]:
    report = svc.cost(window=window, by=[by])
    return {r.key[by]: (float(r.gpu_hours), float(r.total_cost)) for r in report.rows}


def expected_seconds(
    events: list[dict[str, Any]], devices: list[dict[str, Any]], held: dict[int, float]
) -> dict[str, dict[str, float]]:
    """GPU-seconds by workload and by team, from the raw files: each pod what the
    compute-apps snapshots say its pid held (`h100_request_seconds`), idle the rest of the
    span the device log covers (first sample to last, plus one median interval)."""
    workers = {e["pid"]: e for e in events if e["event"] == "worker_start"}
    times = sorted(d["ts"] for d in devices)
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    span = times[-1] - times[0] + gaps[len(gaps) // 2]
    idle = span - sum(held.values())
    by: dict[str, dict[str, float]] = {"workload": {IDLE: idle}, "team": defaultdict(float)}
    by["team"][IDLE] = idle
    for pid, seconds in held.items():
        by["workload"][f"{H100_NS}/{workers[pid]['pod']}"] = seconds
        by["team"][workers[pid]["team"]] += seconds
    return by


def test_costs_through_prometheus_equal_the_raw_files(
    h100_prom: dict[str, Any],
    h100_events: list[dict[str, Any]],
    h100_devices: list[dict[str, Any]],
    h100_request_seconds: dict[int, float],
    make_service: Any,
) -> None:
    svc = make_service(PRICES)
    window = _window(h100_prom["start"], h100_prom["end"])
    result = svc.ingest_prometheus(h100_prom["url"], window=window, step="1s")
    assert result.status == "loaded"
    pods = {r[0] for r in svc.store.raw("SELECT workload_id FROM workloads")}
    names = ("llm-serve-7d9f4", "pretrain-job-0", "jupyter-alice-0", "chat-api-5c6d8")
    assert pods == {f"{H100_NS}/{p}" for p in (*names, "finetune-lora-1")}
    expected = expected_seconds(h100_events, h100_devices, h100_request_seconds)
    for by in ("workload", "team"):
        ours = _costs(svc, window, by)
        assert set(ours) == set(expected[by])
        for key, seconds in expected[by].items():
            # whole-second points against nvidia-smi's ~1.0003 s snapshots and ~1.002 s
            # device samples: each pod within 2 s, idle (which takes every pod's edges and
            # the device log's drift) within 2 s per pod; all equal to the cent
            assert ours[key][1] == pytest.approx(seconds / 3600 * H100_PRICE, abs=0.01), key
            slack = 2 * len(pods) if key == IDLE else 2
            assert ours[key][0] * 3600 == pytest.approx(seconds, abs=slack), key
        # one second per point written, and every point read back
        assert sum(h for h, _ in ours.values()) == pytest.approx(h100_prom["points"] / 3600)
    team_of = dict(svc.store.raw("SELECT workload_id, labels['team'] FROM workloads"))
    assert team_of[f"{H100_NS}/pretrain-job-0"] == "research"
    # the node: the GPU product label GPU Feature Discovery makes of the model nvidia-smi
    # names, as many GPUs as the device log has UUIDs, the signal the series carried
    node = svc.store.raw("SELECT gpu_model, gpu_count, util_signal FROM nodes")
    product = h100_devices[0]["name"].replace(" ", "-")
    assert node == [(product, len({d["uuid"] for d in h100_devices}), "DCGM_FI_DEV_GPU_UTIL")]
    again = svc.ingest_prometheus(h100_prom["url"], window=window, step="1s")
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


def test_chunked_pull_equals_one_request(h100_prom: dict[str, Any]) -> None:
    start, end = h100_prom["start"], h100_prom["end"]
    one = PromClient(h100_prom["url"]).query_range("DCGM_FI_DEV_GPU_UTIL", start, end, 1000)
    chunked = PromClient(h100_prom["url"], max_points=37)
    many = chunked.query_range("DCGM_FI_DEV_GPU_UTIL", start, end, 1000)
    assert many.requests == -(-(end - start) // (37 * 1000)) > 5
    key = lambda s: sorted(s.labels.items())  # noqa: E731
    assert sorted(map(key, one.series)) == sorted(map(key, many.series))
    points = {tuple(key(s)): s.points for s in one.series}
    for s in many.series:
        assert s.points == points[tuple(key(s))]  # no point twice at chunk edges, none lost
    assert one.gaps == many.gaps == []


def test_escaped_label_values_cannot_change_a_query(h100_prom: dict[str, Any]) -> None:
    evil = 'x"} or vector(1) or {__name__="y'
    q = selector("kube_pod_labels", {"label_team": evil})
    assert q == 'kube_pod_labels{label_team="x\\"} or vector(1) or {__name__=\\"y"}'
    got = PromClient(h100_prom["url"]).query_range(q, h100_prom["start"], h100_prom["end"], 1000)
    assert got.series == [] and got.gaps == []  # matched nothing; injected nothing


def test_gaps_are_reported_not_zero(h100_prom: dict[str, Any], make_service: Any) -> None:
    svc = make_service(PRICES)
    # ten minutes before the capture plus the capture: the first ten minutes have no data
    start = h100_prom["start"] - 600_000
    result = svc.ingest_prometheus(
        h100_prom["url"], window=_window(start, h100_prom["end"]), step="1s"
    )
    gaps = [n for n in result.notes if n.startswith("gap ")]
    assert gaps and "no GPU samples (data missing)" in gaps[0]
    assert gaps[0].startswith(f"gap {from_ms(start).isoformat()} .. ")
    assert svc.store.raw("SELECT min(ts_ms) FROM gpu_usage") == [(h100_prom["start"],)]


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
