"""Time-sliced GPUs under the `request` policy (DESIGN §2.4, issue 12 item 1): each pod holds
`request / replicas` of the GPU's time, the unheld replicas are idle, and the even split
stays only where the replicas are unknown or the pods ask for more than there are, which the
report says. Samples through the engine here, stored as a dcgm scrape stores them (the
GPU's time split evenly among the pods on it); tests/test_time_slicing_kubernetes.py goes
through Kubernetes dumps and dcgm scrapes.

Every case: one hour of one-minute samples of one GPU priced $4.00/GPU-h, window
[T0, T0 + 1h), so the GPU costs $4.00 and each pod-hour of a 1/n share costs $4/n.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from aifinops.core.model import IDLE
from tests.conftest import MIN, T0, load_facts, sample, window

PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
SHARED = "nvidia.com/gpu.shared"


def node(replicas: int | None, node_id: str = "ts-node") -> dict[str, Any]:
    return {
        "node_id": node_id,
        "gpu_model": "NVIDIA L4",
        "gpu_count": 1,
        "gpu_replicas": replicas,
        "util_signal": "test-signal",
        "source": "test",
    }


def pod(name: str, request: float | None = 1, resource: str | None = SHARED, **kw: Any) -> dict:
    return {
        "workload_id": f"ml/{name}",
        "kind": "pod",
        "namespace": "ml",
        "name": name,
        "node_id": kw.pop("node_id", "ts-node"),
        "gpu_request": request,
        "gpu_resource": resource,
        "labels": {},
        "source": "test",
        **kw,
    }


def evenly(pods: list[str], busy: float = 0.0, node_id: str = "ts-node") -> list[dict]:
    """An hour of samples with the GPU's time split evenly among `pods` (as dcgm does)."""
    share = 1 / len(pods)
    return [
        r
        for t in range(T0, T0 + 60 * MIN, MIN)
        for r in sample(t, node_id, "GPU-0", [(f"ml/{p}", share, share, busy) for p in pods])
    ]


def costs(svc: Any, **kw: Any) -> tuple[dict[str, Decimal], Any]:
    report = svc.cost(window=window(1), by=["workload"], **kw)
    assert abs(report.total_cost - report.asset_cost) < Decimal("0.000001")
    assert report.asset_cost == Decimal("4")
    return {r.key["workload"]: r.total_cost for r in report.rows}, report


def even_notes(report: Any) -> list[str]:
    return [n for n in report.notes if "split evenly" in n]


def test_one_pod_on_two_replicas_holds_half(make_service: Any) -> None:
    # 1 of 2 replicas: the pod holds half the GPU-hour, $2.00; the other replica is idle
    svc = make_service(PRICES)
    load_facts(svc, [node(2)], [pod("a")], evenly(["a"]))
    got, report = costs(svc)
    assert got == {"ml/a": Decimal("2"), IDLE: Decimal("2")}
    assert even_notes(report) == []
    gpu_hours = {r.key["workload"]: r.gpu_hours for r in report.rows}
    assert gpu_hours == {"ml/a": Decimal("0.5"), IDLE: Decimal("0.5")}
    # the usage policy keeps the measured split: the pod alone used the whole GPU
    got, _ = costs(svc, shared_gpu="usage")
    assert got == {"ml/a": Decimal("4")}


def test_two_pods_on_four_replicas(make_service: Any) -> None:
    # 1 of 4 replicas each: $1.00 each, the two unheld replicas $2.00 idle
    svc = make_service(PRICES)
    load_facts(svc, [node(4)], [pod("a"), pod("b")], evenly(["a", "b"]))
    got, report = costs(svc)
    assert got == {"ml/a": Decimal("1"), "ml/b": Decimal("1"), IDLE: Decimal("2")}
    assert even_notes(report) == []


def test_requests_weigh_replicas_and_resource_nvidia_com_gpu(make_service: Any) -> None:
    # renameByDefault false: pods ask for `nvidia.com/gpu` replicas. 2 + 1 of 4 replicas:
    # $2.00 and $1.00; one replica idle, $1.00
    svc = make_service(PRICES)
    pods = [pod("a", 2, "nvidia.com/gpu"), pod("b", 1, "nvidia.com/gpu")]
    load_facts(svc, [node(4)], pods, evenly(["a", "b"]))
    got, _ = costs(svc)
    assert got == {"ml/a": Decimal("2"), "ml/b": Decimal("1"), IDLE: Decimal("1")}


def test_replicas_unknown_splits_evenly_and_says_so(make_service: Any) -> None:
    svc = make_service(PRICES)
    load_facts(svc, [node(None)], [pod("a"), pod("b")], evenly(["a", "b"]))
    got, report = costs(svc)
    assert got == {"ml/a": Decimal("2"), "ml/b": Decimal("2")}
    (note,) = even_notes(report)
    assert "ts-node (replicas unknown)" in note


def test_more_pods_than_replicas_splits_evenly_and_says_so(make_service: Any) -> None:
    # 3 pods on 2 replicas: no request share fits, the GPU-hour is split in three
    svc = make_service(PRICES)
    load_facts(svc, [node(2)], [pod("a"), pod("b"), pod("c")], evenly(["a", "b", "c"]))
    got, report = costs(svc)
    assert set(got) == {"ml/a", "ml/b", "ml/c"}
    for cost in got.values():
        assert cost == pytest.approx(Decimal(4) / 3, abs=Decimal("0.000001"))
    (note,) = even_notes(report)
    assert "ts-node (pods ask for more than the replicas)" in note


def test_unknown_request_splits_evenly_and_says_so(make_service: Any) -> None:
    # a pod the cluster never described (seen only by dcgm-exporter): its share is unknown
    svc = make_service(PRICES)
    load_facts(svc, [node(2)], [pod("a"), pod("b", None, None)], evenly(["a", "b"]))
    got, report = costs(svc)
    assert got == {"ml/a": Decimal("2"), "ml/b": Decimal("2")}
    (note,) = even_notes(report)
    assert "ts-node (a pod's GPU request unknown)" in note


def test_per_step_and_idle_policies_keep_the_request_share(make_service: Any) -> None:
    # pod a alone on 2 replicas for the first half hour, with b for the second
    svc = make_service(PRICES)
    samples = [r for r in evenly(["a"]) if r["ts"] < T0 + 30 * MIN]
    samples += [r for r in evenly(["a", "b"]) if r["ts"] >= T0 + 30 * MIN]
    load_facts(svc, [node(2)], [pod("a"), pod("b")], samples)
    got, _ = costs(svc)
    # a: half the GPU for the hour, $2.00; b: half for half an hour, $1.00; idle $1.00
    assert got == {"ml/a": Decimal("2"), "ml/b": Decimal("1"), IDLE: Decimal("1")}
    report = svc.cost(window=window(1), by=["workload"], step="30m")
    steps = {(r.start, r.key["workload"]): r.total_cost for r in report.rows}
    assert steps == {
        ("2026-11-23T00:00:00Z", "ml/a"): Decimal("1"),
        ("2026-11-23T00:00:00Z", IDLE): Decimal("1"),
        ("2026-11-23T00:30:00Z", "ml/a"): Decimal("1"),
        ("2026-11-23T00:30:00Z", "ml/b"): Decimal("1"),
    }
    # idle shared evenly in the (one-hour) step: $0.50 each; the idle GPU-hours stay idle
    got, _ = costs(svc, idle="even")
    assert got == {"ml/a": Decimal("2.5"), "ml/b": Decimal("1.5"), IDLE: Decimal("0")}


def test_whole_gpu_nodes_are_untouched(make_service: Any) -> None:
    # replicas 1 (GFD labels every node): a whole-GPU pod holds the whole GPU
    svc = make_service(PRICES)
    load_facts(svc, [node(1)], [pod("a", 1, "nvidia.com/gpu")], evenly(["a"]))
    got, report = costs(svc)
    assert got == {"ml/a": Decimal("4")}
    assert even_notes(report) == []
