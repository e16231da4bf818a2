"""Time-sliced GPUs through the Kubernetes dump path with dcgm-exporter scrapes (issue 12,
item 1): the dump says the node's replicas and the pods' shared-GPU requests, the scrapes
say which pods were on the GPU; the report charges each pod `request / replicas` of the
GPU and leaves the unheld replicas idle, whichever was ingested first.

One hour of one-minute scrapes of one NVIDIA L4 priced $4.00/GPU-h (so the GPU-hour is
$4.00), window 10:00-11:00 on 2026-11-23.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.model import IDLE
from aifinops.sources.inventory.kubernetes import node_row

AT_MS = 1_795_428_000_000  # 2026-11-23T10:00:00Z
WINDOW = "2026-11-23T10:00:00Z,2026-11-23T11:00:00Z"
PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
SHARED = "nvidia.com/gpu.shared"


def node(replicas: int | None, capacity: dict[str, str]) -> dict[str, Any]:
    labels = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/mig.strategy": "none"}
    if replicas is not None:
        labels["nvidia.com/gpu.replicas"] = str(replicas)
    return {
        "kind": "Node",
        "metadata": {"name": "ts-node", "labels": labels},
        "status": {"capacity": capacity},
    }


def pod(name: str, resource: str = SHARED, count: str = "1") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "chat"},
        "spec": {
            "nodeName": "ts-node",
            "containers": [{"name": "c", "resources": {"limits": {resource: count}}}],
        },
        "status": {"phase": "Running", "startTime": "2026-11-23T09:00:00Z"},
    }


def write_dump(tmp_path: Path, replicas: int | None, pods: list[str]) -> Path:
    capacity = {SHARED: str(replicas or 1)}
    items = [node(replicas, capacity), *(pod(p) for p in pods)]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"kind": "List", "items": items}))
    return path


def write_scrapes(tmp_path: Path, pods: list[str]) -> Path:
    """60 one-minute scrapes of GPU 0 on ts-node, its series repeated for each pod."""
    lines = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    for minute in range(60):
        ts = AT_MS + minute * 60_000
        for p in pods:
            lab = (
                'gpu="0",UUID="GPU-l4",Hostname="ts-node",modelName="NVIDIA L4",'
                f'namespace="chat",pod="{p}"'
            )
            lines.append(f"DCGM_FI_DEV_GPU_UTIL{{{lab}}} 40 {ts}")
    path = tmp_path / "dcgm.prom"
    path.write_text("\n".join(lines) + "\n")
    return path


def load(svc: Any, tmp_path: Path, replicas: int | None, pods: list[str], kube_first: bool):
    dump, scrapes = write_dump(tmp_path, replicas, pods), write_scrapes(tmp_path, pods)
    if kube_first:
        svc.ingest_kubernetes([dump])
    svc.ingest_dcgm([str(scrapes)], interval="60s")
    if not kube_first:
        svc.ingest_kubernetes([dump])
    report = svc.cost(window=WINDOW, by=["workload"])
    assert report.asset_cost == Decimal("4")
    assert abs(report.total_cost - report.asset_cost) < Decimal("0.000001")
    got = {r.key["workload"]: r.total_cost for r in report.rows}
    return got, [n for n in report.notes if "split evenly" in n]


@pytest.mark.parametrize("kube_first", [True, False], ids=["kube-first", "dcgm-first"])
def test_one_pod_on_two_replicas(make_service: Any, tmp_path: Path, kube_first: bool) -> None:
    # the pod holds 1 of 2 replicas: $2.00; the other replica is idle: $2.00
    svc = make_service(PRICES)
    got, notes = load(svc, tmp_path, 2, ["chat-a"], kube_first)
    assert got == {"chat/chat-a": Decimal("2"), IDLE: Decimal("2")}
    assert notes == []
    # what the cluster said is what is stored
    assert svc.store.raw("SELECT gpu_request, gpu_resource FROM workloads") == [(1.0, SHARED)]
    assert svc.store.raw("SELECT gpu_count, gpu_replicas FROM nodes") == [(1, 2)]


@pytest.mark.parametrize("kube_first", [True, False], ids=["kube-first", "dcgm-first"])
def test_two_pods_on_four_replicas(make_service: Any, tmp_path: Path, kube_first: bool) -> None:
    svc = make_service(PRICES)
    got, notes = load(svc, tmp_path, 4, ["chat-a", "chat-b"], kube_first)
    assert got == {"chat/chat-a": Decimal("1"), "chat/chat-b": Decimal("1"), IDLE: Decimal("2")}
    assert notes == []


def test_replicas_unknown_even_split_noted(make_service: Any, tmp_path: Path) -> None:
    svc = make_service(PRICES)
    got, notes = load(svc, tmp_path, None, ["chat-a", "chat-b"], True)
    assert got == {"chat/chat-a": Decimal("2"), "chat/chat-b": Decimal("2")}
    assert len(notes) == 1 and "ts-node (replicas unknown)" in notes[0]


def test_more_pods_than_replicas_even_split_noted(make_service: Any, tmp_path: Path) -> None:
    svc = make_service(PRICES)
    got, notes = load(svc, tmp_path, 2, ["chat-a", "chat-b", "chat-c"], False)
    assert set(got) == {"chat/chat-a", "chat/chat-b", "chat/chat-c"}
    for cost in got.values():
        assert cost == pytest.approx(Decimal(4) / 3, abs=Decimal("0.000001"))
    assert len(notes) == 1 and "ts-node (pods ask for more than the replicas)" in notes[0]


@pytest.mark.parametrize(
    ("labels", "capacity", "gpus"),
    [
        ({}, {"nvidia.com/gpu": "4"}, 4),
        ({"nvidia.com/gpu.replicas": "4"}, {"nvidia.com/gpu": "8"}, 2),  # 2 GPUs x 4
        ({"nvidia.com/gpu.replicas": "2"}, {SHARED: "8"}, 4),  # renameByDefault
        ({"nvidia.com/gpu.replicas": "2", "nvidia.com/gpu.count": "3"}, {SHARED: "8"}, 3),
        ({"nvidia.com/mig.strategy": "single"}, {"nvidia.com/gpu": "14"}, 0),  # MIG devices
        ({}, {"aliyun.com/gpu-count": "2"}, 2),
    ],
)
def test_node_gpu_count_allows_for_replicas_and_mig(
    labels: dict[str, str], capacity: dict[str, str], gpus: int
) -> None:
    row = node_row(
        {"metadata": {"name": "n", "labels": labels}, "status": {"capacity": capacity}}, "x"
    )
    assert row["gpu_count"] == gpus


def test_prometheus_path_request_share(tmp_path: Path, make_service: Any) -> None:
    # the Prometheus scenario of tests/test_shared_gpu_prometheus.py: chat-a and chat-b each
    # ask for 1 of ts-node's 4 replicas of its one L4, over 5 minutes ($4/h: $1/3 of GPU).
    # Each pod: a quarter, $1/12; the two unheld replicas: $1/6 idle
    from tests.conftest import PrometheusServer
    from tests.test_shared_gpu_prometheus import openmetrics

    server = PrometheusServer(tmp_path / "prom", openmetrics())
    try:
        svc = make_service(PRICES)
        window = "2026-11-23T00:00:00Z,2026-11-23T00:05:00Z"
        svc.ingest_prometheus(server.url, window=window, step="1m")
    finally:
        server.close()
    report = svc.cost(window=window, by=["workload"])
    gpu = {r.key["workload"]: r.gpu_cost for r in report.rows if r.gpu_cost}
    e = Decimal("0.000001")
    assert set(gpu) == {"lab/chat-a", "lab/chat-b", IDLE}
    assert abs(gpu["lab/chat-a"] - Decimal(1) / 12) < e
    assert abs(gpu["lab/chat-b"] - Decimal(1) / 12) < e
    assert abs(gpu[IDLE] - Decimal(1) / 6) < e
    assert not [n for n in report.notes if "split evenly" in n]
