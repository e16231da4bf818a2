"""The Prometheus path stores what kube-state-metrics says about shared GPUs (issue 12,
item 1): pods' `nvidia.com/gpu.shared` requests, nodes' GFD `nvidia.com/gpu.replicas` and
`nvidia.com/mig.strategy` labels, and GPU capacity. A real Prometheus, filled by promtool
from the OpenMetrics text written here; the expected rows are read off that text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import T0, PrometheusServer

NS = "lab"
START = T0 // 1000  # 2026-11-23T00:00:00Z
SECONDS = range(START, START + 300, 15)
UUID = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def series(name: str, labels: dict[str, str], value: float) -> list[str]:
    lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return [f"{name}{{{lab}}} {value} {t}" for t in SECONDS]


def openmetrics() -> str:
    out = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    gpu = {"gpu": "0", "UUID": UUID, "Hostname": "ts-node", "modelName": "NVIDIA L4"}
    for pod in ("chat-a", "chat-b"):  # two pods time-slicing one GPU
        out += series("DCGM_FI_DEV_GPU_UTIL", gpu | {"namespace": NS, "pod": pod}, 40)
    out.append("# TYPE kube_pod_info gauge")
    for pod, node in (("chat-a", "ts-node"), ("chat-b", "ts-node"), ("train", "big-node")):
        out += series("kube_pod_info", {"namespace": NS, "pod": pod, "node": node}, 1)
    out.append("# TYPE kube_pod_container_resource_requests gauge")
    req = "kube_pod_container_resource_requests"
    for pod in ("chat-a", "chat-b"):
        lab = {"namespace": NS, "pod": pod, "container": "main", "node": "ts-node"}
        out += series(req, lab | {"resource": "nvidia_com_gpu_shared", "unit": "integer"}, 1)
    lab = {"namespace": NS, "pod": "train", "container": "main", "node": "big-node"}
    out += series(req, lab | {"resource": "nvidia_com_gpu", "unit": "integer"}, 2)
    out.append("# TYPE kube_node_labels gauge")
    out += series(
        "kube_node_labels",
        {"node": "ts-node", "label_nvidia_com_gpu_replicas": "4",
         "label_nvidia_com_mig_strategy": "none", "label_nvidia_com_gpu_product": "NVIDIA-L4"},
        1,
    )  # fmt: skip
    out += series("kube_node_labels", {"node": "big-node", "label_nvidia_com_gpu_replicas": "2"}, 1)
    out += series(
        "kube_node_labels", {"node": "mig-node", "label_nvidia_com_mig_strategy": "mixed"}, 1
    )
    out.append("# TYPE kube_node_status_capacity gauge")
    cap = "kube_node_status_capacity"
    # ts-node: 1 GPU advertised 4 times as nvidia.com/gpu.shared; big-node: 8 GPUs x 2
    # replicas as nvidia.com/gpu; mig-node: 3 whole GPUs beside its MIG devices
    out += series(
        cap, {"node": "ts-node", "resource": "nvidia_com_gpu_shared", "unit": "integer"}, 4
    )
    out += series(cap, {"node": "ts-node", "resource": "cpu", "unit": "core"}, 16)
    out += series(cap, {"node": "big-node", "resource": "nvidia_com_gpu", "unit": "integer"}, 16)
    out += series(cap, {"node": "mig-node", "resource": "nvidia_com_gpu", "unit": "integer"}, 3)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def test_shared_gpu_requests_and_node_gpu_facts(tmp_path: Path, make_service: Any) -> None:
    server = PrometheusServer(tmp_path / "prom", openmetrics())
    try:
        svc = make_service()
        result = svc.ingest_prometheus(
            server.url, window="2026-11-23T00:00:00Z,2026-11-23T00:05:00Z", step="1m"
        )
        assert result.status == "loaded"
    finally:
        server.close()
    pods = {
        r[0]: r[1:]
        for r in svc.store.raw("SELECT workload_id, gpu_request, gpu_resource FROM workloads")
    }
    assert pods[f"{NS}/chat-a"] == (1.0, "nvidia.com/gpu.shared")
    assert pods[f"{NS}/chat-b"] == (1.0, "nvidia.com/gpu.shared")
    assert pods[f"{NS}/train"] == (2.0, "nvidia.com/gpu")
    nodes = {
        r[0]: r[1:]
        for r in svc.store.raw(
            "SELECT node_id, gpu_replicas, mig_strategy, gpu_count, cpu_cores FROM nodes"
        )
    }
    assert nodes["ts-node"] == (4, "none", 1, 16.0)
    assert nodes["big-node"][:3] == (2, None, 8)
    # under a MIG strategy the advertised resources are not GPUs: no count from them
    assert nodes["mig-node"][1] == "mixed" and nodes["mig-node"][2] in (None, 0)
