"""kubectl JSON dumps: node and pod facts, and pods joined to nvidia-smi processes."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from aifinops.sources.inventory.kubernetes import parse_cpu, parse_memory_gib, read_dump
from tests.conftest import H100

WINDOW = "2026-11-23T10:00:00Z,2026-11-23T11:00:00Z"


def dump() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": "h100-a",
                    "labels": {
                        "node.kubernetes.io/instance-type": "h100-lab.1x",
                        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                        "nvidia.com/gpu.count": "1",
                    },
                },
                "status": {"capacity": {"cpu": "16", "memory": "125Gi", "nvidia.com/gpu": "1"}},
            },
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": "g5-spot",
                    "labels": {
                        "node.kubernetes.io/instance-type": "g5.xlarge",
                        "topology.kubernetes.io/region": "us-east-1",
                        "topology.kubernetes.io/zone": "us-east-1a",
                        "eks.amazonaws.com/capacityType": "SPOT",
                        "nvidia.com/gpu.product": "NVIDIA-A10G",
                        "nvidia.com/gpu.count": "1",
                        "nvidia.com/gpu.replicas": "4",
                        "nvidia.com/mig.strategy": "none",
                    },
                },
                "spec": {"providerID": "aws:///us-east-1a/i-0abc123"},
                "status": {"capacity": {"cpu": "4", "memory": "16093340Ki"}},
            },
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "ml", "labels": {"team": "research"}},
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "pretrain-job-0",
                    "namespace": "ml",
                    "labels": {"project": "llm"},
                    "ownerReferences": [{"kind": "Job", "name": "pretrain", "controller": True}],
                },
                "spec": {
                    "nodeName": "h100-a",
                    "containers": [
                        {
                            "name": "t",
                            "resources": {
                                "requests": {"cpu": "4", "memory": "16Gi"},
                                "limits": {"nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                },
                "status": {
                    "phase": "Succeeded",
                    "startTime": "2026-11-23T10:36:31Z",
                    "containerStatuses": [
                        {"state": {"terminated": {"finishedAt": "2026-11-23T10:38:04Z"}}}
                    ],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "slice", "namespace": "ml"},
                "spec": {
                    "nodeName": "g5-spot",
                    "containers": [
                        {
                            "name": "c",
                            "resources": {
                                "limits": {"nvidia.com/mig-1g.10gb": "1"},
                                "requests": {"cpu": "500m", "memory": "512Mi"},
                            },
                        }
                    ],
                },
                "status": {"phase": "Running", "startTime": "2026-11-23T09:00:00Z"},
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "shared", "namespace": "ml"},
                "spec": {
                    "nodeName": "g5-spot",
                    "containers": [
                        {"name": "c", "resources": {"limits": {"nvidia.com/gpu.shared": "1"}}}
                    ],
                },
                "status": {"phase": "Running"},
            },
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}},
        ],
    }


def write(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(dump()))
    return path


def test_quantities() -> None:
    assert parse_cpu("500m") == 0.5 and parse_cpu("16") == 16.0
    assert parse_memory_gib("16Gi") == 16.0 and parse_memory_gib("512Mi") == 0.5
    assert parse_memory_gib("16093340Ki") == pytest.approx(15.3478, abs=1e-4)
    assert parse_memory_gib("1G") == pytest.approx(1e9 / 2**30)


G5_EXPECTED = {
    "provider": "aws", "region": "us-east-1", "zone": "us-east-1a",
    "instance_type": "g5.xlarge", "capacity_type": "spot", "gpu_model": "NVIDIA-A10G",
    "gpu_count": 1, "gpu_replicas": 4, "resource_id": "i-0abc123", "cpu_cores": 4.0,
}  # fmt: skip
JOB_EXPECTED = {
    "gpu_request": 1.0, "gpu_resource": "nvidia.com/gpu", "cpu_request": 4.0,
    "mem_request_gib": 16.0, "controller": "Job/pretrain",
}  # fmt: skip


def test_nodes_and_pods(tmp_path: Path) -> None:
    objs = read_dump(write(tmp_path))
    nodes = {n["node_id"]: n for n in objs.nodes}
    g5 = nodes["g5-spot"]
    assert {k: g5[k] for k in G5_EXPECTED} == G5_EXPECTED
    pods = {p["workload_id"]: p for p in objs.pods}
    job = pods["ml/pretrain-job-0"]
    assert {k: job[k] for k in JOB_EXPECTED} == JOB_EXPECTED
    assert job["end_ms"] - job["start_ms"] == 93_000
    assert pods["ml/slice"]["gpu_resource"] == "nvidia.com/mig-1g.10gb"
    assert pods["ml/shared"]["gpu_resource"] == "nvidia.com/gpu.shared"
    assert pods["ml/slice"]["end_ms"] is None
    assert objs.skipped == {"Service": 1}


def test_not_kubernetes_json(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"items": [1, 2]}')
    with pytest.raises(InputError, match="not a Kubernetes object list"):
        read_dump(bad)
    bad.write_text('{"items": [')
    with pytest.raises(InputError, match="not valid JSON"):
        read_dump(bad)


def owners_for_pod(tmp_path: Path) -> Path:
    path = tmp_path / "owners.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["pid", "workload", "labels", "host"])
        out.writerow([817, "ml/pretrain-job-0", "{}", "h100-a"])
    return path


def test_unknown_instance_type_is_unpriced_until_priced(make_service: Any, tmp_path: Path) -> None:
    svc = make_service()
    svc.ingest_kubernetes([write(tmp_path)])
    svc.ingest_nvidia_smi(H100, owners_file=owners_for_pod(tmp_path), host="h100-a")
    report = svc.cost(window=WINDOW, by=["team"])
    assert [(r.key["team"], r.total_cost) for r in report.rows] == [("__unpriced__", 0)]
    assert report.asset_cost == 0
    assert [(u.node, u.reason) for u in report.unpriced] == [
        ("h100-a", "unknown instance type 'h100-lab.1x'")
    ]


def test_pod_labels_and_requests_through_the_owner_file(make_service: Any, tmp_path: Path) -> None:
    # override $6.00/node-hour, 16 cores, 125 GiB: CPU part 16 x 0.031611 = 0.505776,
    # RAM 125 x 0.004237 = 0.529625, GPU 6 - 1.035401 = 4.964599 per GPU-hour.
    svc = make_service({"prices": {"instance_types": {"h100-lab.1x": 6.00}}})
    svc.ingest_kubernetes([write(tmp_path)])
    again = svc.ingest_kubernetes([write(tmp_path)])
    assert again[0].status == "unchanged"
    svc.ingest_nvidia_smi(H100, owners_file=owners_for_pod(tmp_path), host="h100-a")
    rows = {r.key["team"]: r for r in svc.cost(window=WINDOW, by=["team"]).rows}
    research = rows["research"]  # team from the namespace label
    assert research.gpu_cost == pytest.approx(
        research.gpu_hours * Decimal("4.964599"), abs=Decimal("0.000001")
    )
    # 4 cores for the pod's 93 s; 16 GiB x 0.004237 x 93 s
    assert research.cpu_cost == pytest.approx(
        Decimal("4") * Decimal("0.031611") * 93 / 3600, abs=Decimal("0.000001")
    )
    assert research.ram_cost == pytest.approx(
        Decimal("16") * Decimal("0.004237") * 93 / 3600, abs=Decimal("0.000001")
    )
    proj = {r.key["project"]: r for r in svc.cost(window=WINDOW, by=["project"]).rows}
    assert "llm" in proj
