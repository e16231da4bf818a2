"""The Kubernetes API through the official client, against a local HTTP server that answers
with the API's own shapes; and the 1,213 real Node objects of the Alibaba GPU trace."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aifinops.sources.inventory.kubernetes import read_dump
from tests.conftest import Served, shared_data


def test_real_alibaba_node_yaml_loads() -> None:
    path = shared_data("cluster-traces/v2023/node_yaml/openb_node_list_gpu_node.yaml")
    text = path.read_text()
    objects = read_dump(path)
    assert len(objects.nodes) == len(re.findall(r"^kind: Node$", text, re.M)) == 1213
    # counted off the raw text, independently of the YAML parser
    models = re.findall(r"alibabacloud.com/gpu-card-model: (\S+)", text)
    got: dict[str, int] = {}
    for n in objects.nodes:
        got[n["gpu_model"]] = got.get(n["gpu_model"], 0) + 1
    assert got == {m: models.count(m) for m in set(models)}
    assert got["T4"] == 404 and got["G2"] == 549
    counts = re.findall(r"^  capacity:\n    alibabacloud.com/gpu-count: '(\d+)'", text, re.M)
    assert sum(n["gpu_count"] for n in objects.nodes) == sum(map(int, counts))
    first = objects.nodes[0]
    assert (first["node_id"], first["cpu_cores"], first["memory_gib"]) == (
        "openb-node-0000",
        64.0,
        256.0,
    )


def _node(name: str, rv: str, product: str = "NVIDIA-H100-80GB-HBM3") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "resourceVersion": rv,
            "labels": {
                "node.kubernetes.io/instance-type": "p5.48xlarge",
                "topology.kubernetes.io/region": "us-east-1",
                "karpenter.sh/capacity-type": "spot",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": "8",
            },
        },
        "spec": {"providerID": f"aws:///us-east-1a/i-{name}"},
        "status": {"capacity": {"cpu": "192", "memory": "2097152Mi", "nvidia.com/gpu": "8"}},
    }


def _pod(name: str, rv: str, gpus: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "resourceVersion": rv,
            "labels": {"team": "research", "pod-template-hash": "5d8f7"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "trainer-5d8f7",
                    "uid": "9c1f0e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "gpu-a",
            "containers": [
                {
                    "name": "main",
                    "resources": {
                        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": str(gpus)}
                    },
                }
            ],
        },
        "status": {"phase": "Running", "startTime": "2026-11-23T10:00:00Z", **status},
    }


def _list(kind: str, items: list[dict[str, Any]], rv: str, cont: str | None = None) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return json.dumps(
        {"kind": f"{kind}List", "apiVersion": "v1", "metadata": meta, "items": items}
    ).encode()


def _events(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps({"type": t, "object": {"kind": "Pod", "apiVersion": "v1", **o}}).encode() + b"\n"
        for t, o in events
    )


def test_list_then_watch_survives_an_expired_watch(
    served: Served, make_service: Any, tmp_path: Path
) -> None:
    served.routes["/api/v1/nodes"] = [(200, _list("Node", [_node("gpu-a", "10")], "100"))]
    served.routes["/api/v1/nodes?watch"] = [(200, b"")]
    ns = {"metadata": {"name": "ml", "labels": {"team": "research"}}}
    served.routes["/api/v1/namespaces"] = [(200, _list("Namespace", [ns], "100"))]
    served.routes["/api/v1/namespaces?watch"] = [(200, b"")]
    # pods come in two pages
    served.routes["/api/v1/pods"] = [
        (200, _list("Pod", [_pod("trainer-5d8f7-a", "11")], "100", cont="page2")),
        (200, _list("Pod", [_pod("trainer-5d8f7-a", "11")], "300", cont="page2")),
    ]
    served.routes["/api/v1/pods?continue"] = [
        (200, _list("Pod", [_pod("trainer-5d8f7-b", "12")], "100")),
        (200, _list("Pod", [_pod("trainer-5d8f7-b", "12"), _pod("late", "301")], "300")),
    ]
    done = {
        "phase": "Succeeded",
        "containerStatuses": [{"state": {"terminated": {"finishedAt": "2026-11-23T11:00:00Z"}}}],
    }
    gone = _pod("trainer-5d8f7-b", "203")
    gone["metadata"]["deletionTimestamp"] = "2026-11-23T11:30:00Z"
    expired = {"kind": "Status", "code": 410, "reason": "Expired"}
    expired["message"] = "too old resource version: 250 (290)"
    served.routes["/api/v1/pods?watch"] = [
        (
            200,
            _events(
                ("MODIFIED", _pod("trainer-5d8f7-a", "201", **done)),
                ("ADDED", _pod("new-job", "202", gpus=2)),
                ("DELETED", gone),
                ("BOOKMARK", {"metadata": {"resourceVersion": "250"}}),
            ),
        ),
        # the next watch, from version 250, is too old for the server: 410 Gone
        (
            200,
            _events(
                (
                    "ERROR",
                    {
                        "kind": "Status",
                        "code": 410,
                        "reason": "Expired",
                        "message": "too old resource version: 250 (290)",
                    },
                )
            ),
        ),
        (200, b""),
    ]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: t, cluster: {{server: '{served.url('')}'}}}}]\n"
        "users: [{name: u, user: {token: t0ken}}]\n"
        "contexts: [{name: c, context: {cluster: t, user: u}}]\ncurrent-context: c\n"
    )
    # the watch runs on the service's clock: each reading of it moves it on 0.1 s, so the
    # 2.5 s watch is 25 readings long, whatever the machine's speed
    ticks = iter(range(10_000))
    clock = lambda: datetime.fromtimestamp(1_795_435_200 + next(ticks) / 10, UTC)  # noqa: E731
    svc = make_service(clock=clock, sleep=lambda _: None)
    result = svc.ingest_kubernetes_api(kubeconfig=str(kubeconfig), watch_seconds=2.5)
    notes = " | ".join(result.notes)
    assert "listed 1 nodes, 2 pods, 1 namespaces" in notes
    assert "re-list(s) after an expired watch" in notes and "3 changes" in notes
    pods = {
        r[0]: r[1:]
        for r in svc.store.raw(
            "SELECT workload_id, end_ms, gpu_request, controller FROM workloads ORDER BY 1"
        )
    }
    eleven, half_past = 1_795_431_600_000, 1_795_433_400_000  # 11:00Z, 11:30Z
    assert pods == {
        "ml/late": (None, 1.0, "Deployment/trainer"),  # seen only by the re-list
        "ml/new-job": (None, 2.0, "Deployment/trainer"),
        "ml/trainer-5d8f7-a": (eleven, 1.0, "Deployment/trainer"),
        "ml/trainer-5d8f7-b": (half_past, 1.0, "Deployment/trainer"),
    }
    node = svc.store.raw(
        "SELECT instance_type, capacity_type, gpu_model, gpu_count, resource_id FROM nodes"
    )
    assert node == [("p5.48xlarge", "spot", "NVIDIA-H100-80GB-HBM3", 8, "i-gpu-a")]
    # every request carried the kubeconfig's token; watches resumed from the versions seen
    auth = [{k.lower(): v for k, v in h.items()}.get("authorization") for _, h in served.requests]
    assert auth and set(auth) == {"Bearer t0ken"}
    watches = [p for p, _ in served.requests if p.startswith("/api/v1/pods?") and "watch" in p]
    assert "resourceVersion=100" in watches[0] and "resourceVersion=250" in watches[1]
    assert "resourceVersion=300" in watches[2]


def test_no_kubeconfig_is_a_clear_error(make_service: Any, tmp_path: Path) -> None:
    from aifinops.errors import InputError

    svc = make_service()
    with pytest.raises(InputError, match="no usable Kubernetes configuration") as info:
        svc.ingest_kubernetes_api(kubeconfig=str(tmp_path / "missing"))
    assert info.value.where == str(tmp_path / "missing")
