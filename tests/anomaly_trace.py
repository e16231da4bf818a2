"""The Alibaba v2023 pod trace (Weng et al., ATC '23) as a fleet in the store, for the
anomaly tests: its days 116-149 (where it is complete: no pod deleted before day 115.3 is
in it), its seconds read as Unix seconds (day 0 a Thursday).

Each pod is a workload of team = its QoS class (ls, be, burstable, guaranteed), on one of
16 V100 nodes (pod i on node i mod 16). Each of its GPUs is a device of its own, sampled
once per day it is alive: held for the part of the day it is alive, its request share
`gpu_milli / 1000` (the rest of the device idle). V100 at $3.06 a GPU-hour.

`daily_gpu_hours` recomputes the GPU-hours held per (day, team, pod, node) from the raw CSV
(the expected values of the tests come from there, never from the code under test)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from decimal import Decimal
from typing import Any

from aifinops.service import Service
from tests.conftest import load_facts, sample, shared_data

TRACE = "cluster-traces/v2023/csv/openb_pod_list_default.csv"
DAY_S = 86_400
D0, D1 = 116, 149  # the days loaded: [D0, D1)
RATE = Decimal("3.06")  # $ per V100 GPU-hour
PRICES = {"prices": {"gpu_models": {"V100": 3.06}}}
NODES = [f"node-{i:02d}" for i in range(16)]


def pods() -> list[dict[str, Any]]:
    """The GPU pods alive in the loaded days, each with its team, node and GPU share."""
    out = []
    with shared_data(TRACE).open(newline="") as f:
        for i, r in enumerate(csv.DictReader(f)):
            if int(r["num_gpu"]) <= 0 or not r["scheduled_time"]:
                continue
            s, e = (
                max(int(r["scheduled_time"]), D0 * DAY_S),
                min(int(r["deletion_time"]), D1 * DAY_S),
            )
            if e <= s:
                continue
            team = r["qos"].lower()
            out.append({"name": r["name"], "team": team, "workload": f"{team}/{r['name']}",
                        "node": NODES[i % len(NODES)], "gpus": int(r["num_gpu"]),
                        "share": int(r["gpu_milli"]) / 1000, "start": s, "end": e})  # fmt: skip
    return out


def pieces(p: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(day, first second, seconds alive) of each day a pod is alive."""
    out = []
    for day in range(p["start"] // DAY_S, math.ceil(p["end"] / DAY_S)):
        a, b = max(p["start"], day * DAY_S), min(p["end"], (day + 1) * DAY_S)
        if b > a:
            out.append((day, a, b - a))
    return out


def daily_gpu_hours(ps: list[dict[str, Any]]) -> dict[tuple[int, str, str, str], Decimal]:
    """GPU-hours held per (day, team, workload, node), from the CSV's seconds."""
    out: dict[tuple[int, str, str, str], Decimal] = defaultdict(Decimal)
    for p in ps:
        for day, _, secs in pieces(p):
            held = Decimal(p["gpus"]) * Decimal(str(p["share"])) * Decimal(secs) / 3600
            out[(day, p["team"], p["workload"], p["node"])] += held
    return dict(out)


def load(
    svc: Service, ps: list[dict[str, Any]], extra: list[tuple[str, str, int, int, float]] = ()
) -> None:  # type: ignore[assignment]
    """The pods into the store; `extra` adds devices (workload, node, day, GPUs, share) held
    the whole of one day (an injection)."""
    nodes = [{"node_id": n, "gpu_model": "NVIDIA V100", "gpu_count": 8, "source": "test"}
             for n in NODES]  # fmt: skip
    known = {p["workload"]: p for p in ps}
    workloads = [{"workload_id": p["workload"], "kind": "pod", "namespace": p["team"],
                  "name": p["name"], "node_id": p["node"], "gpu_request": p["gpus"],
                  "gpu_resource": "nvidia.com/gpu", "labels": {"team": p["team"]},
                  "start_ms": p["start"] * 1000, "end_ms": p["end"] * 1000, "source": "test"}
                 for p in ps]  # fmt: skip
    for w, node, _, _, _ in extra:
        if w not in known:
            team = w.split("/")[0]
            workloads.append({"workload_id": w, "kind": "pod", "namespace": team,
                              "name": w.split("/")[1], "node_id": node, "gpu_request": 1,
                              "gpu_resource": "nvidia.com/gpu", "labels": {"team": team},
                              "source": "test"})  # fmt: skip
            known[w] = {}
    samples: list[dict[str, Any]] = []
    for p in ps:
        holders = [(p["workload"], p["share"], p["share"], 0.5)]
        if p["share"] < 1:
            holders.append((None, 1 - p["share"], 1 - p["share"], 0.0))
        for _, first, secs in pieces(p):
            for g in range(p["gpus"]):
                samples += sample(first * 1000, p["node"], f"{p['name']}-{g}", holders,
                                  secs * 1000)  # fmt: skip
    for w, node, day, gpus, share in extra:
        holders = [(w, share, share, 0.5)] + (
            [(None, 1 - share, 1 - share, 0.0)] if share < 1 else []
        )
        for g in range(gpus):
            samples += sample(day * DAY_S * 1000, node, f"x-{w}-{day}-{g}", holders, DAY_S * 1000)
    load_facts(svc, nodes, workloads, samples)


def window(first: int = D0, last: int = D1) -> str:
    from aifinops.core.windows import from_ms

    return f"{from_ms(first * DAY_S * 1000).isoformat()},{from_ms(last * DAY_S * 1000).isoformat()}"
