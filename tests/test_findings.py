"""Findings kept in the store (issue 15, first part): stable ids across runs, a dismissal
that sticks, a history, and the seed's `/api/v1/recommendations` path serving them.

One node of L4 GPUs at $4.00 per GPU-hour; pod `lab/nb` holds GPU-0 for 10 hours at 0 %
busy, pod `lab/train` holds GPU-1 for the same 10 hours at 90 % busy; the window is the
24 hours from T0. `idle-gpu` flags the notebook only: its run-rate is $4 x 10/24 x 730 =
$1,216.67 a month (its whole cost, spread over the window, as a month)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aifinops.core.windows import from_ms
from aifinops.errors import NotFoundError, UsageError
from aifinops.service import Service
from tests.conftest import HOUR, T0, load_facts, sample

PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
WINDOW = f"{from_ms(T0).isoformat()},{from_ms(T0 + 24 * HOUR).isoformat()}"


def lab(svc: Service) -> None:
    node = {"node_id": "n1", "gpu_model": "NVIDIA L4", "gpu_count": 2, "source": "test"}
    pods = [{"workload_id": f"lab/{n}", "kind": "pod", "namespace": "lab", "name": n,
             "node_id": "n1", "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
             "labels": {"team": "ml"}, "start_ms": T0, "end_ms": T0 + 10 * HOUR,
             "source": "test"} for n in ("nb", "train")]  # fmt: skip
    samples = []
    for t in range(T0, T0 + 10 * HOUR, HOUR):
        samples += sample(t, "n1", "GPU-0", [("lab/nb", 1.0, 1.0, 0.0)], HOUR)
        samples += sample(t, "n1", "GPU-1", [("lab/train", 1.0, 1.0, 0.9)], HOUR)
    load_facts(svc, [node], pods, samples)


@pytest.fixture
def svc(make_service: Callable[..., Service]) -> Service:
    s = make_service({**PRICES, "recommendations": {"cheaper-offer": {"enabled": False}}})
    lab(s)
    return s


def test_a_dismissal_sticks_across_runs(svc: Service) -> None:
    first = svc.optimize(window=WINDOW, rules=["idle-gpu"])
    assert [(f.rule, f.scope["workload"], str(f.monthly_saving)) for f in first.findings] == [
        ("idle-gpu", "lab/nb", "1216.67")]  # fmt: skip
    (fid,) = first.new
    listed = svc.recommendations()
    assert [(r["id"], r["status"], r["monthly_saving"]) for r in listed] == [
        (fid, "open", "1216.67")]  # fmt: skip
    with pytest.raises(UsageError, match="needs a reason"):
        svc.set_finding_status(fid, "dismissed", "")
    svc.set_finding_status(fid, "dismissed", "the lab's demo GPU", "alice")
    again = svc.optimize(window=WINDOW, rules=["idle-gpu"])
    assert [f.id for f in again.findings] == [fid] and again.new == []  # the same id
    assert svc.recommendations() == []  # open ones only: it stays dismissed
    (kept,) = svc.recommendations(status="dismissed")
    assert (kept["reason"], kept["scope"]["workload"]) == ("the lab's demo GPU", "lab/nb")
    history = svc.findings.history(fid)
    assert [(h["event"], h["actor"], h["detail"]) for h in history] == [
        ("found", None, None), ("dismissed", "alice", "the lab's demo GPU")]  # fmt: skip
    with pytest.raises(NotFoundError):
        svc.set_finding_status("idle-gpu-000000000000", "applied")


def test_filters(svc: Service) -> None:
    svc.optimize(window=WINDOW, rules=["idle-gpu"])
    assert [r["rule"] for r in svc.recommendations(severity="high")] == ["idle-gpu"]
    assert svc.recommendations(severity="low") == []
    assert svc.recommendations(team="search") == []
    with pytest.raises(UsageError, match="unknown severity"):
        svc.recommendations(severity="urgent")
