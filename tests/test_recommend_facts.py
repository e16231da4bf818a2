"""The facts the recommendation rules read (issue 15), as the engine prepares them.

Hand-built fleet, worked by hand. Node `n1`: four H100 80GB at $2.00 per GPU-hour (no CPU
or RAM price), spot capacity, one-minute samples over two hours from T0; every GPU sampled
every minute, so the node costs 4 x 2 h x $2 = $16.
- `ml/trainer` (Job, asks 2 GPUs, label `ai-finops.io/checkpoints: "true"`) holds GPU-0
  and GPU-1 for 90 minutes. Hour 1: GPU-0 busy 50 % for 30 min, GPU-1 busy 0.5 % then
  (below the 1 % that counts as busy) and idle after: held 2.0, busy (30 x 0.5 + 30 x
  0.005) / 60 = 0.2525, peak 1. Hour 2 (30 min held): both busy 100 % for 10 min: held
  1.0, busy 20 / 60, peak 2. Cost 3 GPU-h x $2 = $6; it asks 2 GPUs, so it was held 1.5 h:
  $4.00 an hour held.
- `web/api-7c9d-a` and `-b`, two pods of ReplicaSet `api-7c9d` (a Deployment), one GPU each
  (GPU-2, GPU-3) for hour 1: `-a` busy 100 % for its first 30 min, `-b` 20 % from minute
  25 (both busy at once for 5 min); `-a` has serving counters. At 01:00 both end and `-c`
  (GPU-2) and `-d` (GPU-3) take over for 30 min, busy 100 % one after the other (a
  rollout: the replicas stay 2). One holding `web/api-7c9d`: hour 1 held 2.0, busy 0.5 +
  35 x 0.2 / 60, peak 2; hour 2 held 1.0, busy 0.5, peak 1 (never both at once). Held
  hours min(1, 2/1) + min(1, 1/1) = 2; cost 3 GPU-h = $6: $3.00 an hour held.
- `lab/nb` (Kubeflow notebook label, no team anywhere) holds GPU-0 for the last 30 min,
  idle: held 0.5, busy 0, peak 0; $1 of `__unallocated__` spend.
- Idle: GPU-1, GPU-2 and GPU-3 30 min each = 1.5 GPU-h = $3. 6 + 6 + 1 + 3 = 16.
Node `m1`: one H100 cut by MIG; `ml/small` holds a 1g.10gb instance (1/7 of the GPU) for
hour 1, busy half of it: held 1/7, busy 0.5/7, peak 1, gpus 1/7, an instance of 10 GiB;
$2/7 of cost over 1 instance-hour held. The node is sampled both hours: $4, of which
$26/7 idle; the window's total is $20.
Memory (fb_used_mib) per GPU and minute, written as DCGM would: the most on one of a
holding's GPUs in each hour is the expected figure; a reading at an instant with no sample
and one of a GPU the holding was not on never count, and a second reading of the same GPU
and instant (another source) counts once.

The real H100 capture: each workload's busy share in its hour equals what is recomputed
here from nvidia-smi's raw files; its memory, from the NVML stream the node agent
replays, equals the raw stream's device memory at the samples that list its process, and
from nvidia-smi's files, their memory.used at the device samples its snapshots read.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from aifinops.app.recommend import Recommend, holding_kind
from aifinops.core.gpus import gpu_memory_mib, mig_profile
from aifinops.core.model import UNALLOCATED
from aifinops.core.recommend.base import Facts, GpuHolding
from aifinops.core.windows import Window, from_ms
from aifinops.service import Service
from aifinops.store.recommend import holding_hours
from aifinops.tables import COUNTERS, GPU_ENERGY, rows_table
from tests.conftest import H100, HOUR, MIN, NVML, T0, load_facts, nvidia_smi_time, sample
from tests.test_h100_capture import pmon_sm

pytestmark = pytest.mark.engines


PRICES = {"prices": {"gpu_models": {"H100": 2.00}}}
H1, H2 = T0, T0 + HOUR


def _fleet() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [
        {"node_id": "n1", "gpu_model": "NVIDIA H100 80GB HBM3", "gpu_count": 4,
         "provider": "aws", "region": "us-east-1", "capacity_type": "spot", "source": "test"},
        {"node_id": "m1", "gpu_model": "NVIDIA H100 80GB HBM3", "gpu_count": 1,
         "mig_strategy": "mixed", "source": "test"},
    ]  # fmt: skip

    def pod(wid: str, **kw: Any) -> dict[str, Any]:
        ns, name = wid.split("/")
        return {"workload_id": wid, "kind": "pod", "namespace": ns, "name": name,
                "gpu_resource": "nvidia.com/gpu", "gpu_request": 1.0,
                "source": "test"} | kw  # fmt: skip

    workloads = [
        pod("ml/trainer", node_id="n1", controller="Job/trainer", gpu_request=2.0,
            start_ms=T0, end_ms=T0 + 90 * MIN,
            labels={"team": "ml", "ai-finops.io/checkpoints": "true"}),
        pod("web/api-7c9d-a", node_id="n1", controller="ReplicaSet/api-7c9d",
            start_ms=T0, end_ms=T0 + HOUR, labels={"team": "web"}),
        pod("web/api-7c9d-b", node_id="n1", controller="ReplicaSet/api-7c9d",
            start_ms=T0, end_ms=T0 + HOUR, labels={"team": "web"}),
        pod("web/api-7c9d-c", node_id="n1", controller="ReplicaSet/api-7c9d",
            start_ms=T0 + HOUR, end_ms=T0 + 90 * MIN, labels={"team": "web"}),
        pod("web/api-7c9d-d", node_id="n1", controller="ReplicaSet/api-7c9d",
            start_ms=T0 + HOUR, end_ms=T0 + 90 * MIN, labels={"team": "web"}),
        pod("lab/nb", node_id="n1", controller=None, start_ms=T0 + 90 * MIN,
            end_ms=T0 + 2 * HOUR, labels={"notebook-name": "nb"}),
        pod("ml/small", node_id="m1", gpu_resource="nvidia.com/mig-1g.10gb", start_ms=T0,
            end_ms=T0 + HOUR, labels={"team": "ml"}),
    ]  # fmt: skip
    samples: list[dict[str, Any]] = []
    for m in range(120):
        t = T0 + m * MIN
        if m < 90:
            busy0 = 0.5 if m < 30 else 1.0 if 60 <= m < 70 else 0.0
            busy1 = 0.005 if m < 30 else 1.0 if 60 <= m < 70 else 0.0
            samples += sample(t, "n1", "GPU-0", [("ml/trainer", 1, 1, busy0)])
            samples += sample(t, "n1", "GPU-1", [("ml/trainer", 1, 1, busy1)])
        else:
            samples += sample(t, "n1", "GPU-0", [("lab/nb", 1, 1, 0.0)])
            samples += sample(t, "n1", "GPU-1", [(None, 1, 1, 0.0)])
        if m < 60:
            a, b = 1.0 if m < 30 else 0.0, 0.2 if m >= 25 else 0.0
            samples += sample(t, "n1", "GPU-2", [("web/api-7c9d-a", 1, 1, a)])
            samples += sample(t, "n1", "GPU-3", [("web/api-7c9d-b", 1, 1, b)])
            samples += sample(t, "m1", "GPU-M/1", [("ml/small", 1 / 7, 1 / 7, 0.5 / 7)])
            samples += sample(t, "m1", "GPU-M", [(None, 6 / 7, 6 / 7, 0.0)])
        else:
            c, d = ("web/api-7c9d-c", "web/api-7c9d-d") if m < 90 else (None, None)
            samples += sample(t, "n1", "GPU-2", [(c, 1, 1, 1.0 if c and m < 75 else 0.0)])
            samples += sample(t, "n1", "GPU-3", [(d, 1, 1, 1.0 if d and m >= 75 else 0.0)])
            samples += sample(t, "m1", "GPU-M", [(None, 1, 1, 0.0)])
    return nodes, workloads, samples


def _memory(m: int, gpu: str) -> float:
    """fb_used_mib of an n1 GPU at minute m."""
    table = {
        "GPU-0": 20_000 if m < 30 else 5_000 if m < 60 else 24_000 if m < 90 else 30_720,
        "GPU-1": 31_000 if m == 45 else 1_000 if m < 60 else 12_000 if m < 90 else 500,
        "GPU-2": 70_000 if m < 60 else 65_000 if m < 90 else 500,
        "GPU-3": 40_000 if m < 60 else 45_000 if m < 90 else 500,
    }
    return float(table[gpu])


@pytest.fixture
def fleet(make_service: Callable[..., Service]) -> Service:
    svc = make_service(PRICES)
    nodes, workloads, samples = _fleet()
    load_facts(svc, nodes, workloads, samples)
    readings = [
        {"ts_ms": T0 + m * MIN, "node_id": "n1", "gpu_id": g, "fb_used_mib": _memory(m, g),
         "source": "dcgm"}
        for m in range(120) for g in ("GPU-0", "GPU-1", "GPU-2", "GPU-3")
    ]  # fmt: skip
    readings += [
        # at an instant with no sample: not a sample's reading
        {"ts_ms": T0 + 30_000, "node_id": "n1", "gpu_id": "GPU-0", "fb_used_mib": 79_000.0},
        # the same GPU and instant read by another source: counted once
        {"ts_ms": T0 + 10 * MIN, "node_id": "n1", "gpu_id": "GPU-0", "fb_used_mib": 20_000.0,
         "source": "agent"},
    ]  # fmt: skip
    svc.store.insert_arrow("gpu_energy", rows_table(readings, GPU_ENERGY))
    counters = [
        {"ts_ms": T0 + m * MIN, "workload_id": "web/api-7c9d-a", "server": "vllm",
         "model": "m", "metric": "requests", "value": float(m), "source": "test"}
        for m in (5, 10)
    ]  # fmt: skip
    svc.store.insert_arrow("serving_counters", rows_table(counters, COUNTERS))
    return svc


def facts_of(svc: Service, start: int = T0, end: int = T0 + 2 * HOUR) -> Facts:
    return Recommend(svc.ctx, svc.costs, svc.prices).facts(Window(from_ms(start), from_ms(end)))


def by_workload(facts: Facts) -> dict[str, GpuHolding]:
    return {h.workload: h for h in facts.holdings}


def test_hourly_use_per_workload(fleet: Service) -> None:
    rows = holding_hours(fleet.store, T0, T0 + 2 * HOUR).to_pylist()
    got = {(r["workload_id"], r["start_ms"]): r for r in rows}
    expected = {  # held, busy, peak, memory
        ("ml/trainer", H1): (2.0, 0.2525, 1, 31_000.0),
        ("ml/trainer", H2): (1.0, 20 / 60, 2, 24_000.0),
        ("web/api-7c9d-a", H1): (1.0, 0.5, 1, 70_000.0),
        ("web/api-7c9d-b", H1): (1.0, 35 * 0.2 / 60, 1, 40_000.0),
        ("web/api-7c9d-c", H2): (0.5, 0.25, 1, 65_000.0),
        ("web/api-7c9d-d", H2): (0.5, 0.25, 1, 45_000.0),
        ("lab/nb", H2): (0.5, 0.0, 0, 30_720.0),
        ("ml/small", H1): (1 / 7, 0.5 / 7, 1, None),
    }
    assert set(got) == set(expected)
    for key, (held, busy, peak, memory) in expected.items():
        r = got[key]
        assert r["held_gpus"] == pytest.approx(held, abs=1e-9), key
        assert r["busy_gpus"] == pytest.approx(busy, abs=1e-9), key
        assert (r["peak_gpus"], r["memory_mib"]) == (peak, memory), key
    assert got[("ml/trainer", H1)]["gpus_seen"] == 2


def test_holdings(fleet: Service) -> None:
    facts = facts_of(fleet)
    got = by_workload(facts)
    assert set(got) == {"ml/trainer", "web/api-7c9d", "lab/nb", "ml/small"}

    trainer = got["ml/trainer"]
    assert (trainer.kind, trainer.team, trainer.namespace) == ("Job", "ml", "ml")
    assert trainer.node == "n1"
    assert (trainer.gpus, trainer.replicas, trainer.checkpoints, trainer.serving) == (
        2.0, 1, True, False
    )  # fmt: skip
    assert (trainer.gpu_model, trainer.gpu_memory_mib) == ("H100 80GB", 80 * 1024.0)
    assert (trainer.provider, trainer.region, trainer.capacity) == ("aws", "us-east-1", "spot")
    assert trainer.cost_per_hour == pytest.approx(Decimal("4.00"), abs=Decimal("1e-9"))
    assert trainer.held_hours == pytest.approx(1.5)
    assert [(h.start_ms, h.peak_gpus, h.memory_mib) for h in trainer.hours] == [
        (H1, 1, 31_000.0), (H2, 2, 24_000.0)
    ]  # fmt: skip

    api = got["web/api-7c9d"]
    assert (api.kind, api.team, api.replicas, api.serving, api.gpus) == (
        "Deployment", "web", 2, True, 1.0
    )  # fmt: skip
    first, second = api.hours
    assert (first.start_ms, first.peak_gpus, first.memory_mib) == (H1, 2, 70_000.0)
    assert (first.held_gpus, first.busy_gpus) == pytest.approx((2.0, 0.5 + 35 * 0.2 / 60))
    assert (second.start_ms, second.peak_gpus, second.memory_mib) == (H2, 1, 65_000.0)
    assert (second.held_gpus, second.busy_gpus) == pytest.approx((1.0, 0.5))
    assert api.held_hours == pytest.approx(2.0)
    assert api.cost_per_hour == pytest.approx(Decimal(3), abs=Decimal("1e-9"))

    nb = got["lab/nb"]
    assert (nb.kind, nb.team, nb.checkpoints) == ("Notebook", UNALLOCATED, False)
    (hour,) = nb.hours
    assert (hour.start_ms, hour.held_gpus, hour.busy_gpus, hour.peak_gpus) == (H2, 0.5, 0.0, 0)
    assert nb.cost_per_hour == pytest.approx(Decimal("2.00"), abs=Decimal("1e-9"))

    small = got["ml/small"]
    assert small.gpus == pytest.approx(1 / 7)
    assert small.gpu_memory_mib == 10 * 1024.0
    assert small.held_hours == pytest.approx(1.0)
    assert small.cost_per_hour == pytest.approx(Decimal(2) / 7, abs=Decimal("1e-6"))
    assert small.capacity == "on-demand"  # nothing said: the catalog's default
    assert math.isnan(small.hours[0].memory_mib)  # no reading for its GPU: not known


def test_spend_and_total(fleet: Service) -> None:
    facts = facts_of(fleet)
    assert facts.total_spend == pytest.approx(Decimal(20), abs=Decimal("1e-9"))
    (line,) = facts.spend
    assert dict(line.key) == {"namespace": "lab", "workload": "lab/nb", "node": "n1"}
    assert line.cost == pytest.approx(Decimal(1), abs=Decimal("1e-9"))
    assert dict(line.labels) == {"notebook-name": "nb"}
    assert (facts.start_ms, facts.end_ms, facts.currency) == (T0, T0 + 2 * HOUR, "USD")
    # money: what the holdings cost while held, and idle, add up to the window's total
    held = sum(
        (h.cost_per_hour * Decimal(repr(h.held_hours)) for h in facts.holdings),
        Decimal(0),
    )
    assert held + 3 + Decimal(26) / 7 == pytest.approx(facts.total_spend, abs=Decimal("1e-6"))


def test_hours_count_from_the_window_start(fleet: Service) -> None:
    """A window that starts at 00:30 cuts hours from 00:30: the trainer's 60 minutes from
    00:30 to 01:30 are one hour, half of it busy 0.5 % (below 1 %) and 10 minutes busy."""
    start = T0 + 30 * MIN
    facts = facts_of(fleet, start, start + HOUR)
    (hour,) = by_workload(facts)["ml/trainer"].hours
    assert hour.start_ms == start
    assert hour.held_gpus == pytest.approx(2.0)
    assert hour.busy_gpus == pytest.approx(20 / 60)
    assert hour.peak_gpus == 2


def test_a_window_without_samples(fleet: Service) -> None:
    facts = facts_of(fleet, T0 + 3 * HOUR, T0 + 4 * HOUR)
    assert (facts.holdings, facts.spend, facts.total_spend) == ((), (), Decimal(0))
    assert holding_hours(fleet.store, T0 + 3 * HOUR, T0 + 4 * HOUR).num_rows == 0


def test_offers_are_the_catalog(fleet: Service) -> None:
    facts = facts_of(fleet)
    catalog = fleet.prices.catalog.offers
    assert 0 < len(facts.offers) <= len(catalog)
    p5 = [o for o in facts.offers if o.instance_type == "p5.48xlarge" and o.region == ""]
    assert p5 and p5[0].gpus == 8 and p5[0].gpu_model == "H100 80GB"
    row = next(o for o in catalog if o.instance_type == "p5.48xlarge" and not o.region)
    assert (p5[0].on_demand, p5[0].spot) == (row.on_demand_hourly, row.spot_hourly)
    assert p5[0].gpu_memory_mib == 80 * 1024.0


@pytest.mark.parametrize(
    ("controller", "kind", "labels", "expected"),
    [
        ("ReplicaSet/web-5d8f7", "pod", {}, "Deployment"),
        ("Deployment/web", "pod", {}, "Deployment"),
        ("StatefulSet/db", "pod", {}, "StatefulSet"),
        ("StatefulSet/nb", "pod", {"notebook-name": "nb"}, "Notebook"),
        ("Job/train-1", "pod", {}, "Job"),
        ("slurm-job/4242", "slurm-job", {}, "Job"),
        ("RayCluster/r", "pod", {}, "RayCluster"),
        (None, "process", {"workload-kind": "training_small"}, "Job"),
        (None, "process", {"workload-kind": "notebook"}, "Notebook"),
        (None, "process", {"workload-kind": "inference"}, "Process"),
        (None, "pod", {}, "Pod"),
    ],
)
def test_kind(controller: str | None, kind: str, labels: dict[str, str], expected: str) -> None:
    assert holding_kind(controller, kind, labels) == expected


def test_gpu_memory_table() -> None:
    assert gpu_memory_mib("NVIDIA H100 80GB HBM3") == 81_920.0
    assert gpu_memory_mib("NVIDIA A100-SXM4-40GB") == 40_960.0
    assert gpu_memory_mib("NVIDIA L4") == 24_576.0  # the family's, where the name says none
    assert gpu_memory_mib("Mystery 9000") is None
    assert mig_profile("nvidia.com/mig-3g.40gb", "H100") == (Fraction(3, 7), 40_960.0)
    assert mig_profile("nvidia.com/mig-2g.12gb", "NVIDIA A30") == (Fraction(2, 4), 12_288.0)
    assert mig_profile("nvidia.com/gpu") is None


# -- the real H100 capture --------------------------------------------------------------
CAPTURE_HOUR = 1_795_428_000_000  # 2026-11-23T10:00Z: the whole capture lies in it


def _capture_facts(svc: Service) -> dict[str, GpuHolding]:
    return by_workload(facts_of(svc, CAPTURE_HOUR, CAPTURE_HOUR + HOUR))


def _smi_per_pid(
    devices: list[dict[str, Any]], snapshots: dict[float, list[int]]
) -> dict[int, tuple[float, float, float]]:
    """From nvidia-smi's files alone: per pid, its held and busy GPU-seconds and the most
    device memory used while it held the GPU. Each compute-apps snapshot lasts one
    (median) device interval, split evenly among its pids, and reads the nearest device
    sample; a pid is busy at that sample's utilisation when alone, at its own pmon SM %
    when shared (a pmon `-` is 0 %; an even part of the device's when pmon has no line)."""
    times = [d["ts"] for d in devices]
    interval = median(b - a for a, b in itertools.pairwise(times))
    sm = pmon_sm()
    memory = _smi_memory()
    held: dict[int, float] = defaultdict(float)
    busy: dict[int, float] = defaultdict(float)
    most: dict[int, float] = defaultdict(float)
    for t, pids in snapshots.items():
        i = bisect.bisect_left(times, t)
        near = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - t))
        util = devices[near]["util"] / 100
        for pid in pids:
            held[pid] += interval / len(pids)
            most[pid] = max(most[pid], memory[times[near]])
            own = sm.get((int(t), pid))
            if len(pids) == 1:
                busy[pid] += interval * util
            elif own is not None:
                busy[pid] += interval * own / 100
            else:
                busy[pid] += interval * util / len(pids)
    return {pid: (held[pid], busy[pid], most[pid]) for pid in held}


def _smi_memory() -> dict[float, float]:
    """nvidia_smi_query_gpu.csv: memory.used (MiB) at each device sample time."""
    with (H100 / "nvidia_smi_query_gpu.csv").open(newline="") as fh:
        return {
            nvidia_smi_time(r["timestamp"]): float(r["memory.used [MiB]"].removesuffix(" MiB"))
            for r in csv.DictReader(fh, skipinitialspace=True)
        }


def test_capture_busy_share_from_nvidia_smi(
    capture_service: Service,
    h100_events: list[dict[str, Any]],
    h100_devices: list[dict[str, Any]],
    h100_snapshots: dict[float, list[int]],
) -> None:
    pods = {e["pid"]: f"lab/{e['pod']}" for e in h100_events if e["event"] == "worker_start"}
    got = _capture_facts(capture_service)
    expected = _smi_per_pid(h100_devices, h100_snapshots)
    assert set(got) == set(pods.values())
    for pid, (held_s, busy_s, _) in expected.items():
        (hour,) = got[pods[pid]].hours
        assert hour.start_ms == CAPTURE_HOUR
        assert hour.held_gpus * 3600 == pytest.approx(held_s, rel=0.01), pods[pid]
        assert hour.busy_gpus / hour.held_gpus == pytest.approx(busy_s / held_s, abs=0.005)
        assert hour.peak_gpus == (1 if busy_s > 0 else 0), pods[pid]
    notebook = got["lab/jupyter-alice-0"]
    assert (notebook.kind, notebook.team, notebook.gpus) == ("Notebook", "data-science", 1.0)
    assert notebook.cost_per_hour == pytest.approx(Decimal(4), abs=Decimal("1e-9"))
    assert notebook.hours[0].busy_gpus == 0.0


def test_capture_memory_from_nvidia_smi(
    capture_service: Service,
    h100_events: list[dict[str, Any]],
    h100_devices: list[dict[str, Any]],
    h100_snapshots: dict[float, list[int]],
) -> None:
    pods = {e["pid"]: f"lab/{e['pod']}" for e in h100_events if e["event"] == "worker_start"}
    got = _capture_facts(capture_service)
    for pid, (_, _, mib) in _smi_per_pid(h100_devices, h100_snapshots).items():
        assert got[pods[pid]].hours[0].memory_mib == pytest.approx(mib, rel=0.01), pods[pid]


def test_capture_memory_from_the_nvml_stream(
    agent_service: Any, run_agent: Any, tmp_path: Path
) -> None:
    svc = agent_service()
    run_agent(svc, tmp_path)
    records = [json.loads(x) for x in NVML.read_text().splitlines() if x.strip()]
    most: dict[int, float] = defaultdict(float)
    for r in records:
        if r.get("event") != "sample":
            continue
        for p in r.get("procs") or []:
            most[p["pid"]] = max(most[p["pid"]], r["mem_used"] / 2**20)
    workload = {
        732: "lab/llm-serve-7d9f4",
        817: "slurm/4242/h100-lab-01",
        896: "user/alice@h100-lab-01",
        937: "lab/chat-api-5c6d8",
        938: "lab/finetune-lora-1",
    }
    got = _capture_facts(svc)
    assert set(most) == set(workload)
    for pid, mib in most.items():
        (hour,) = got[workload[pid]].hours
        assert hour.memory_mib == pytest.approx(mib, abs=1e-6), workload[pid]
    # the notebook held some 30 GiB of the H100 and used none of its compute
    alice = got["user/alice@h100-lab-01"].hours[0]
    assert 30_000 < alice.memory_mib < 32_768 and alice.busy_gpus < 0.001 * alice.held_gpus


def test_capture_findings_end_to_end(
    make_service: Callable[..., Service],
    h100_events: list[dict[str, Any]],
    h100_devices: list[dict[str, Any]],
    h100_snapshots: dict[float, list[int]],
) -> None:
    """The capture's nvidia-smi logs ingested, the rules run by `optimize` over its hour:
    the notebook is flagged idle-gpu with the memory it held, and the model server is
    rightsized to a MIG profile that holds its measured peak with the 20 % headroom — the
    peaks those of nvidia-smi's own memory.used column while each held the GPU (read off
    the raw file above, not from the store). idle-gpu's min_hours is 0.01: the capture is
    6 minutes long."""
    from aifinops.demo.capture import CAPTURE_HOST, h100_capture_dir, owners_from_events

    svc = make_service({"prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": 4.00}},
                        "recommendations": {"idle-gpu": {"min_hours": 0.01},
                                            "cheaper-offer": {"enabled": False}}})  # fmt: skip
    cap = h100_capture_dir()
    owners = owners_from_events(cap / "workload_events.jsonl", namespace="lab")
    svc.ingest_nvidia_smi(cap, host=CAPTURE_HOST, owners=owners)
    peaks = {pid: mib for pid, (_, _, mib) in _smi_per_pid(h100_devices, h100_snapshots).items()}
    pids = {f"lab/{e['pod']}": e["pid"] for e in h100_events if e["event"] == "worker_start"}
    window = f"{from_ms(CAPTURE_HOUR).isoformat()},{from_ms(CAPTURE_HOUR + HOUR).isoformat()}"
    run = svc.optimize(window=window, rules=["idle-gpu", "rightsize-gpu"])
    found = {(f.rule, f.scope["workload"]): f for f in run.findings}
    idle = found[("idle-gpu", "lab/jupyter-alice-0")]
    assert idle.evidence["peak_memory_mib"] == pytest.approx(peaks[pids["lab/jupyter-alice-0"]],
                                                             rel=0.01)  # fmt: skip
    assert "GiB of GPU memory" in idle.action and idle.evidence["busy_share"] == 0
    assert [w for r, w in found if r == "idle-gpu"] == ["lab/jupyter-alice-0"]
    serve = found[("rightsize-gpu", "lab/llm-serve-7d9f4")]
    peak = peaks[pids["lab/llm-serve-7d9f4"]]
    assert serve.evidence["memory_mib"] == pytest.approx(peak, rel=0.01)
    assert serve.evidence["mig_profile"] in {"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb"}
    assert serve.evidence["profile_memory_gib"] * 1024 >= peak * 1.2
    assert serve.monthly_saving > 0
