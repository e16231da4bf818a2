"""A seeded synthetic GPU fleet: nodes, pods and one-minute GPU samples with holders.

Shaped like what dcgm-exporter with pod mapping plus `kubectl get -o json` would give:
every sample already names the pod that held the GPU (or MIG slice, or time-slice
replica). Used by `aifinops demo`, by tests and by the benchmarks. The same seed gives the
same fleet, byte for byte.

A GPU has `slots`: 1 for a whole GPU, 7 for a MIG GPU cut in 1g slices, `replicas` for a
time-sliced GPU. Each slot has a schedule of placements (pods); a minute with no placement
is idle. Request shares are the slot weights; usage shares split a time-sliced GPU among
the pods on it by their utilisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from aifinops.core.shares import split_by_use, split_even
from aifinops.sources.facts import MICRO, usage_table

MINUTE_MS = 60_000
SIGNAL = "DCGM_FI_PROF_GR_ENGINE_ACTIVE (synthetic)"


@dataclass
class NodeSpec:
    node_id: str
    gpu_count: int
    gpu_model: str
    provider: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    capacity_type: str | None = "on-demand"
    cpu_cores: float = 0.0
    memory_gib: float = 0.0
    mode: str = "whole"  # whole | mig | timeslice
    slots: int = 1
    labels: dict[str, str] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "provider": self.provider,
            "region": self.region,
            "zone": self.zone,
            "instance_type": self.instance_type,
            "capacity_type": self.capacity_type,
            "gpu_model": self.gpu_model,
            "gpu_count": self.gpu_count,
            "cpu_cores": self.cpu_cores,
            "memory_gib": self.memory_gib,
            "mig_strategy": "mixed" if self.mode == "mig" else None,
            "gpu_replicas": self.slots if self.mode == "timeslice" else None,
            "util_signal": SIGNAL,
            "labels": self.labels,
            "source": "synthetic",
        }


@dataclass
class Placement:
    workload_id: str
    node_id: str
    gpu: int
    slot: int
    start_min: int
    end_min: int
    profile: str  # training | inference | notebook | batch


@dataclass
class Fleet:
    start_ms: int
    minutes: int
    nodes: list[NodeSpec]
    workloads: list[dict[str, Any]]
    namespaces: list[dict[str, Any]]
    placements: list[Placement]

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.minutes * MINUTE_MS

    def gpu_count(self) -> int:
        return sum(n.gpu_count for n in self.nodes)


# -- utilisation profiles ------------------------------------------------------------------


def _profile(
    kind: str, minutes: np.ndarray[Any, Any], rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    n = len(minutes)
    if kind == "training":
        util = rng.normal(0.90, 0.04, n)
        stalls = rng.random(n) < 0.01  # checkpoints and data stalls
        util[stalls] = rng.uniform(0.0, 0.2, int(stalls.sum()))
    elif kind == "inference":
        hour = (minutes / 60.0) % 24
        diurnal = 0.12 + 0.45 * np.clip(np.sin(2 * np.pi * (hour - 7) / 24), 0, None)
        bursts = (rng.random(n) < 0.03) * rng.uniform(0.2, 0.5, n)
        util = diurnal + bursts + rng.normal(0, 0.03, n)
    elif kind == "notebook":
        util = np.abs(rng.normal(0.01, 0.01, n))
        active = rng.random(n) < 0.02
        util[active] = rng.uniform(0.2, 0.6, int(active.sum()))
    else:  # batch
        util = rng.normal(0.65, 0.1, n)
    return np.clip(util, 0.0, 1.0)


# -- sample generation ---------------------------------------------------------------------


def usage_batches(fleet: Fleet, seed: int, gpus_per_batch: int = 64) -> Iterator[pa.Table]:
    """Yield `gpu_usage` tables, a batch of GPUs at a time, in bounded memory."""
    by_gpu: dict[tuple[str, int], list[Placement]] = {}
    for p in fleet.placements:
        by_gpu.setdefault((p.node_id, p.gpu), []).append(p)
    rng = np.random.default_rng(seed + 7919)
    minutes = np.arange(fleet.minutes, dtype=np.int64)
    ts = fleet.start_ms + minutes * MINUTE_MS
    # the daily cycle keeps to the clock wherever the fleet starts: minutes since the
    # time of day DEMO_START has (0 for a fleet starting at it, as the default one does)
    clock = minutes + (fleet.start_ms - int(DEMO_START.timestamp() * 1000)) // MINUTE_MS % 1440
    pending: list[dict[str, Any]] = []
    count = 0
    for node in fleet.nodes:
        for gpu in range(node.gpu_count):
            pending.append(
                _gpu_rows(node, gpu, by_gpu.get((node.node_id, gpu), []), ts, clock, rng)
            )
            count += 1
            if count % gpus_per_batch == 0:
                yield _to_table(pending)
                pending = []
    if pending:
        yield _to_table(pending)


def _gpu_rows(
    node: NodeSpec,
    gpu: int,
    placements: list[Placement],
    ts: np.ndarray[Any, Any],
    clock: np.ndarray[Any, Any],
    rng: np.random.Generator,
) -> dict[str, Any]:
    slots, n = node.slots, len(ts)
    holder = np.full((slots, n), -1, dtype=np.int64)
    util = np.zeros((slots, n))
    names = [p.workload_id for p in placements]
    for i, p in enumerate(placements):
        a, b = max(p.start_min, 0), min(p.end_min, n)
        if a >= b:
            continue
        holder[p.slot, a:b] = i
        util[p.slot, a:b] = _profile(p.profile, clock[a:b], rng)
    total = MINUTE_MS * MICRO
    # every minute the same: each slot's request share (core.shares, as for real samples)
    req = np.repeat(np.array([split_even(total, slots)], dtype=np.int64).T, n, axis=1)
    held = holder >= 0
    if node.mode == "timeslice":
        util = util / slots  # a replica's busy share of the whole device
        # usage shares: a minute's time among the pods holding it, by their utilisation;
        # a minute no pod holds keeps the request split (its rows are idle)
        use = req.copy()
        minutes_held = np.flatnonzero(held.any(axis=0))
        use[:, minutes_held] = 0
        held_t, util_t = held.T.tolist(), util.T.tolist()
        for m in minutes_held.tolist():
            rows = [s for s in range(slots) if held_t[m][s]]
            use[rows, m] = split_by_use(total, [util_t[m][s] for s in rows])
        used = np.round(util * MINUTE_MS * MICRO).astype(np.int64)
    else:
        use = req
        used = np.round(util * req).astype(np.int64)
    used = np.where(held, used, 0)
    return {
        "ts": np.tile(ts, slots),
        "gpu": f"{node.node_id}-gpu{gpu}",
        "node": node.node_id,
        "holder": holder.ravel(),
        "names": names,
        "req": req.ravel(),
        "use": use.ravel(),
        "used": used.ravel(),
    }


def _to_table(parts: list[dict[str, Any]]) -> pa.Table:
    ts = np.concatenate([p["ts"] for p in parts])
    node = pa.array(
        np.concatenate([np.full(len(p["ts"]), p["node"], dtype=object) for p in parts]), pa.string()
    )
    gpu = pa.array(
        np.concatenate([np.full(len(p["ts"]), p["gpu"], dtype=object) for p in parts]), pa.string()
    )
    # holder names through a dictionary: one index per row, no per-row Python strings
    offset, names, indices = 0, [], []
    for p in parts:
        names += p["names"]
        indices.append(np.where(p["holder"] >= 0, p["holder"] + offset, -1))
        offset += len(p["names"])
    idx = np.concatenate(indices)
    dictionary = pa.array(names or [""], pa.string())
    workload = pa.DictionaryArray.from_arrays(
        pa.array(np.where(idx >= 0, idx, 0), pa.int32(), mask=idx < 0), dictionary
    ).cast(pa.string())
    return usage_table(
        ts,
        node,
        gpu,
        workload,
        np.concatenate([p["req"] for p in parts]),
        np.concatenate([p["use"] for p in parts]),
        np.concatenate([p["used"] for p in parts]),
    )


# -- fleets --------------------------------------------------------------------------------

TEAMS = {
    "research": ("ml-research", ["foundation-llm", "rlhf"], ["llama-3-8b", "mistral-7b"]),
    "search": ("search", ["semantic-search"], ["bge-large", "llama-3-8b"]),
    "product": ("product-ai", ["chat-assistant"], ["mistral-7b", "llama-3-70b"]),
    "data-science": ("data-science", ["churn", "forecasting"], ["xgboost-gpu", "tft"]),
    "vision": ("vision", ["image-gen"], ["sdxl"]),
}
DEMO_START = datetime(2026, 11, 16, 11, 0, tzinfo=UTC)


def demo_fleet(seed: int = 42, days: int = 7, start: datetime = DEMO_START) -> Fleet:
    """A realistic mixed fleet on AWS, GCP and on-prem; see the module docstring."""
    rng = np.random.default_rng(seed)
    minutes = days * 24 * 60
    start_ms = int(start.timestamp() * 1000)
    nodes = [
        NodeSpec(
            "aws-p4d-1",
            8,
            "NVIDIA A100-SXM4-40GB",
            "aws",
            "us-east-1",
            "us-east-1a",
            "p4d.24xlarge",
            "on-demand",
            96,
            1152,
        ),
        NodeSpec(
            "aws-p4d-2",
            8,
            "NVIDIA A100-SXM4-40GB",
            "aws",
            "us-east-1",
            "us-east-1b",
            "p4d.24xlarge",
            "spot",
            96,
            1152,
        ),
        NodeSpec(
            "gcp-a2-mig",
            1,
            "NVIDIA A100-SXM4-40GB",
            "gcp",
            "us-central1",
            "us-central1-a",
            "a2-highgpu-1g",
            "on-demand",
            12,
            85,
            mode="mig",
            slots=7,
        ),
        NodeSpec(
            "aws-g5-1",
            1,
            "NVIDIA A10G",
            "aws",
            "us-east-1",
            "us-east-1a",
            "g5.xlarge",
            "on-demand",
            4,
            16,
            mode="timeslice",
            slots=4,
        ),
        NodeSpec(
            "aws-g5-2",
            1,
            "NVIDIA A10G",
            "aws",
            "us-east-1",
            "us-east-1c",
            "g5.xlarge",
            "spot",
            4,
            16,
            mode="timeslice",
            slots=4,
        ),
        NodeSpec(
            "aws-g5-3",
            4,
            "NVIDIA A10G",
            "aws",
            "us-west-2",
            "us-west-2a",
            "g5.12xlarge",
            "on-demand",
            48,
            192,
        ),
        NodeSpec(
            "gcp-a2-1",
            1,
            "NVIDIA A100-SXM4-40GB",
            "gcp",
            "us-central1",
            "us-central1-a",
            "a2-highgpu-1g",
            "on-demand",
            12,
            85,
        ),
        NodeSpec(
            "gcp-a2-2",
            4,
            "NVIDIA A100-SXM4-40GB",
            "gcp",
            "us-central1",
            "us-central1-b",
            "a2-highgpu-4g",
            "spot",
            48,
            340,
        ),
        NodeSpec(
            "onprem-dgx-1", 8, "NVIDIA H100 80GB HBM3", None, "dc-frankfurt", None, None, None, 0, 0
        ),
        # an owned L40S server nobody has priced yet: the demo's `__unpriced__` example
        NodeSpec(
            "onprem-l40s-1", 4, "NVIDIA L40S", None, "dc-frankfurt", None, None, None, 48, 384
        ),
    ]
    workloads: list[dict[str, Any]] = []
    placements: list[Placement] = []
    counter = 0

    def add(
        node: NodeSpec,
        gpu: int,
        slot: int,
        team: str | None,
        kind: str,
        a: int,
        b: int,
        namespace: str | None = None,
        labels_on_pod: bool = True,
        share: str = "gpu",
    ) -> None:
        nonlocal counter
        counter += 1
        ns_default, projects, models = TEAMS.get(team or "", ("sandbox", ["adhoc"], ["unknown"]))
        ns = namespace or ns_default
        prefix = {
            "training": "train",
            "inference": "serve",
            "notebook": "jupyter",
            "batch": "eval",
        }[kind]
        model = models[int(rng.integers(len(models)))]
        name = f"{prefix}-{model.replace('.', '')}-{counter:05d}"
        labels = {"app.kubernetes.io/name": name}
        if team and labels_on_pod:
            labels |= {
                "team": team,
                "project": projects[int(rng.integers(len(projects)))],
                "model": model,
                "environment": "prod" if kind == "inference" else "dev",
            }
        resource = {
            "gpu": "nvidia.com/gpu",
            "mig": "nvidia.com/mig-1g.5gb",
            "timeslice": "nvidia.com/gpu.shared",
        }[share]
        wid = f"{ns}/{name}"
        workloads.append(
            {
                "workload_id": wid,
                "kind": "pod",
                "namespace": ns,
                "name": name,
                "node_id": node.node_id,
                "controller": f"Job/{name}"
                if kind != "inference"
                else f"ReplicaSet/{prefix}-{model}",
                "start_ms": start_ms + a * MINUTE_MS,
                "end_ms": start_ms + b * MINUTE_MS,
                "gpu_request": 1.0,
                "gpu_resource": resource,
                "cpu_request": {"training": 10.0, "inference": 2.0, "notebook": 4.0, "batch": 6.0}[
                    kind
                ]
                if share == "gpu"
                else 1.0,
                "mem_request_gib": {
                    "training": 120.0,
                    "inference": 12.0,
                    "notebook": 32.0,
                    "batch": 60.0,
                }[kind]
                if share == "gpu"
                else 4.0,
                "labels": labels,
                "source": "synthetic",
            }
        )
        placements.append(Placement(wid, node.node_id, gpu, slot, a, b, kind))

    def schedule(
        node: NodeSpec,
        gpu: int,
        slot: int,
        team: str | None,
        kind: str,
        mean_h: float,
        gap_h: float,
        share: str = "gpu",
        **kw: Any,
    ) -> None:
        t = int(rng.integers(0, max(1, int(gap_h * 60))))
        while t < minutes:
            length = max(30, int(rng.exponential(mean_h * 60)))
            add(node, gpu, slot, team, kind, t, min(minutes, t + length), share=share, **kw)
            t += length + int(rng.exponential(gap_h * 60))

    n = {x.node_id: x for x in nodes}
    for g in range(8):  # p4d-1: research training, two GPUs of notebooks
        if g < 6:
            schedule(n["aws-p4d-1"], g, 0, "research", "training", 30, 2)
        else:
            schedule(n["aws-p4d-1"], g, 0, "data-science", "notebook", 9, 6)
    for g in range(8):  # p4d-2 (spot): product inference and search batch
        schedule(
            n["aws-p4d-2"],
            g,
            0,
            "product" if g < 5 else "search",
            "inference" if g < 5 else "batch",
            60 if g < 5 else 5,
            1 if g < 5 else 3,
        )
    for slot in range(7):  # MIG slices: small inference pods, some slices idle
        if slot < 5:
            schedule(n["gcp-a2-mig"], 0, slot, "search", "inference", 40, 4, share="mig")
    for node_id in ("aws-g5-1", "aws-g5-2"):  # time-sliced A10G
        for slot in range(3):
            schedule(
                n[node_id],
                0,
                slot,
                "product" if slot else "vision",
                "inference",
                20,
                3,
                share="timeslice",
            )
    for g in range(4):
        schedule(n["aws-g5-3"], g, 0, "vision" if g < 2 else None, "batch", 6, 4)
    schedule(n["gcp-a2-1"], 0, 0, "data-science", "notebook", 8, 8)
    for g in range(4):
        schedule(n["gcp-a2-2"], g, 0, "search", "training", 20, 6)
    for g in range(8):
        schedule(n["onprem-dgx-1"], g, 0, "research", "training", 48, 1)
    for g in range(4):
        schedule(n["onprem-l40s-1"], g, 0, "vision", "inference", 24, 4)

    # overhead: a dcgm-exporter per node in gpu-operator (CPU only, shared)
    for node in nodes:
        workloads.append(
            {
                "workload_id": f"gpu-operator/nvidia-dcgm-exporter-{node.node_id}",
                "kind": "pod",
                "namespace": "gpu-operator",
                "name": f"nvidia-dcgm-exporter-{node.node_id}",
                "node_id": node.node_id,
                "controller": "DaemonSet/nvidia-dcgm-exporter",
                "start_ms": start_ms,
                "end_ms": None,
                "cpu_request": 0.5,
                "mem_request_gib": 1.0,
                "labels": {"app": "nvidia-dcgm-exporter"},
                "source": "synthetic",
            }
        )
    namespaces = [{"namespace": ns, "labels": {"team": team}} for team, (ns, _, _) in TEAMS.items()]
    namespaces += [
        {"namespace": "sandbox", "labels": {}},
        {"namespace": "gpu-operator", "labels": {}},
    ]
    return Fleet(start_ms, minutes, nodes, workloads, namespaces, placements)


def bench_fleet(gpus: int, days: int, seed: int = 1, start: datetime = DEMO_START) -> Fleet:
    """N GPUs (8 per node) x D days of whole-GPU jobs of five teams, ~8 h each."""
    rng = np.random.default_rng(seed)
    minutes = days * 24 * 60
    start_ms = int(start.timestamp() * 1000)
    teams = list(TEAMS)
    nodes = [
        NodeSpec(
            f"node-{i:04d}",
            min(8, gpus - i * 8),
            "NVIDIA A100-SXM4-40GB",
            "aws",
            "us-east-1",
            None,
            "p4d.24xlarge",
            "on-demand",
            96,
            1152,
        )
        for i in range((gpus + 7) // 8)
    ]
    workloads: list[dict[str, Any]] = []
    placements: list[Placement] = []
    counter = 0
    kinds = ("training", "inference", "notebook", "batch")
    for node in nodes:
        for g in range(node.gpu_count):
            t = int(rng.integers(0, 120))
            while t < minutes:
                length = max(15, int(rng.exponential(7.5 * 60)))
                end = min(minutes, t + length)
                counter += 1
                team = teams[counter % len(teams)]
                kind = kinds[counter % len(kinds)]
                wid = f"{TEAMS[team][0]}/job-{counter:07d}"
                workloads.append(
                    {
                        "workload_id": wid,
                        "kind": "pod",
                        "namespace": TEAMS[team][0],
                        "name": f"job-{counter:07d}",
                        "node_id": node.node_id,
                        "start_ms": start_ms + t * MINUTE_MS,
                        "end_ms": start_ms + end * MINUTE_MS,
                        "gpu_request": 1.0,
                        "gpu_resource": "nvidia.com/gpu",
                        "cpu_request": 8.0,
                        "mem_request_gib": 64.0,
                        "labels": {
                            "team": team,
                            "project": TEAMS[team][1][0],
                            "model": TEAMS[team][2][0],
                        },
                        "source": "synthetic",
                    }
                )
                placements.append(Placement(wid, node.node_id, g, 0, t, end, kind))
                t = end + int(rng.exponential(30))
    namespaces = [{"namespace": ns, "labels": {"team": team}} for team, (ns, _, _) in TEAMS.items()]
    return Fleet(start_ms, minutes, nodes, workloads, namespaces, placements)
