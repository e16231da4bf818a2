"""Money invariants on random fleets (Hypothesis), through the real engine on DuckDB.

- conservation: rows sum to the asset cost, to the cent, under every policy, and the
  asset cost equals price x GPUs x hours worked out here;
- no negative charge;
- hourly steps sum to one daily step;
- grouping by team then summing equals grouping by nothing.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aifinops.config import load_settings
from aifinops.service import Service
from tests.conftest import HOUR, T0, load_facts, window

CENT = Decimal("0.005")
STEP = 30 * 60_000  # one sample per 30 minutes keeps examples small
MODELS = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L4"]


@st.composite
def fleets(draw: Any) -> dict[str, Any]:
    nodes, workloads, samples = [], [], []
    prices: dict[str, Decimal] = {}
    expected_asset = Decimal(0)
    for m in MODELS:
        prices[m] = Decimal(draw(st.integers(10, 2000))) / 100
    n_nodes = draw(st.integers(1, 3))
    for i in range(n_nodes):
        kind = draw(st.sampled_from(["override", "catalog", "unpriced"]))
        gpus = draw(st.integers(1, 2))
        nid = f"n{i}"
        if kind == "override":
            model = draw(st.sampled_from(MODELS))
            nodes.append({"node_id": nid, "gpu_model": model, "gpu_count": gpus})
            expected_asset += prices[model] * gpus * 24
        elif kind == "catalog":
            gpus = 1
            nodes.append(
                {
                    "node_id": nid,
                    "gpu_model": "Tesla V100",
                    "gpu_count": 1,
                    "instance_type": "p3.2xlarge",
                    "cpu_cores": 8.0,
                    "memory_gib": 61.0,
                }
            )
            expected_asset += Decimal("3.06") * 24
        else:
            nodes.append(
                {
                    "node_id": nid,
                    "gpu_model": "NVIDIA B200",
                    "gpu_count": gpus,
                    "instance_type": "b9.huge",
                }
            )
        pool = []
        for j in range(draw(st.integers(1, 4))):
            wid = f"{draw(st.sampled_from(['ns1', 'ns2', 'kube-system']))}/w{i}-{j}"
            team = draw(st.sampled_from(["a", "b", None]))
            start = T0 + draw(st.integers(0, 23)) * HOUR
            workloads.append(
                {
                    "workload_id": wid,
                    "kind": "pod",
                    "namespace": wid.split("/")[0],
                    "node_id": nid,
                    "labels": {"team": team, "model": "m1"} if team else {},
                    "cpu_request": draw(st.sampled_from([None, 0.5, 1.0])),
                    "mem_request_gib": draw(st.sampled_from([None, 4.0, 8.0])),
                    "start_ms": start,
                    "end_ms": start + draw(st.integers(1, 12)) * HOUR,
                }
            )
            pool.append(wid)
        for g in range(gpus):
            for t in range(T0, T0 + 24 * HOUR, STEP):
                k = draw(st.integers(0, min(3, len(pool))))
                holders = draw(st.permutations(pool))[:k]
                weights = [draw(st.integers(1, 4)) for _ in holders]
                idle_w = draw(st.integers(0, 4)) if holders else 1
                total = STEP * 1_000_000
                req = [total * w // (sum(weights) + idle_w) for w in weights]
                use = [total * w // sum(weights) for w in weights] if holders else []
                if use:
                    use[-1] += total - sum(use)
                rows = [
                    (h, r, u, draw(st.integers(0, r)))
                    for h, r, u in zip(holders, req, use, strict=True)
                ]
                idle_req = total - sum(req)
                if idle_req or not holders:
                    rows.append((None, idle_req, 0 if holders else total, 0))
                for h, r, u, busy in rows:
                    samples.append(
                        {
                            "ts": t,
                            "node": nid,
                            "gpu": f"{nid}-g{g}",
                            "w": h,
                            "req": r,
                            "use": u,
                            "used": busy,
                        }
                    )
    return {
        "nodes": nodes,
        "workloads": workloads,
        "samples": samples,
        "prices": prices,
        "asset": expected_asset,
    }


def service(fleet: dict[str, Any]) -> Service:
    config = {"prices": {"gpu_models": {m: float(p) for m, p in fleet["prices"].items()}}}
    svc = Service(load_settings(None, env={}, flags={"db": ":memory:", **config}))
    load_facts(svc, fleet["nodes"], fleet["workloads"], fleet["samples"])
    return svc


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(
    fleets(),
    st.sampled_from(["separate", "weighted", "even"]),
    st.sampled_from(["request", "usage"]),
)
def test_conservation_and_no_negative_charge(fleet: dict[str, Any], idle: str, shared: str) -> None:
    svc = service(fleet)
    try:
        report = svc.cost(window=window(24), by=["team"], idle=idle, shared_gpu=shared)
    finally:
        svc.close()
    assert abs(report.asset_cost - fleet["asset"]) < CENT
    assert abs(report.total_cost - report.asset_cost) < CENT
    for row in report.rows:
        for field in ("gpu_cost", "cpu_cost", "ram_cost", "idle_cost", "waste_cost", "gpu_hours"):
            assert getattr(row, field) >= Decimal("-0.000001"), (row.key, field)
        assert row.waste_cost <= row.gpu_cost + Decimal("0.000001")


@SETTINGS
@given(fleets(), st.sampled_from(["request", "usage"]))
def test_hourly_steps_sum_to_the_daily_step(fleet: dict[str, Any], shared: str) -> None:
    svc = service(fleet)
    try:
        hourly = svc.cost(window=window(24), by=["team"], step="1h", shared_gpu=shared)
        daily = svc.cost(window=window(24), by=["team"], step="1d", shared_gpu=shared)
    finally:
        svc.close()
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for row in hourly.rows:
        sums[row.key["team"]] += row.total_cost
    day = {r.key["team"]: r.total_cost for r in daily.rows}
    assert set(sums) == set(day)
    for team, value in day.items():
        assert abs(sums[team] - value) < CENT, team


@SETTINGS
@given(fleets(), st.sampled_from(["separate", "weighted", "even"]))
def test_grouping_then_summing_equals_no_grouping(fleet: dict[str, Any], idle: str) -> None:
    svc = service(fleet)
    try:
        none = svc.cost(window=window(24), by=[], idle=idle)
        by_team = svc.cost(window=window(24), by=["team"], idle=idle)
        by_two = svc.cost(window=window(24), by=["team", "model"], idle=idle)
    finally:
        svc.close()
    assert len(none.rows) <= 1
    total = none.rows[0].total_cost if none.rows else Decimal(0)
    hours = none.rows[0].gpu_hours if none.rows else Decimal(0)
    assert abs(by_team.total_cost - total) < CENT
    assert abs(sum(r.gpu_hours for r in by_team.rows) - hours) < Decimal("0.000001")
    per_team: dict[str, Decimal] = defaultdict(Decimal)
    for row in by_two.rows:
        per_team[row.key["team"]] += row.total_cost
    for row in by_team.rows:
        assert abs(per_team[row.key["team"]] - row.total_cost) < CENT
