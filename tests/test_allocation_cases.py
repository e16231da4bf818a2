"""Allocation cases whose expected numbers are worked out by hand in the comments.

Every case is one hour of one-minute samples, window [T0, T0 + 1h), priced by overrides or
the bundled catalog. Expected values are dollars and hours.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from aifinops.core.model import IDLE, SHARED, UNALLOCATED, UNPRICED
from tests.conftest import MIN, T0, load_facts, sample, window

pytestmark = pytest.mark.engines

E = Decimal("0.000001")


def minutes(n: int, start: int = 0) -> range:
    return range(T0 + start * MIN, T0 + (start + n) * MIN, MIN)


def node(node_id: str, gpu_model: str, gpus: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "gpu_model": gpu_model,
        "gpu_count": gpus,
        "util_signal": "test-signal",
        "source": "test",
        **kw,
    }


def pod(wid: str, team: str | None, node_id: str, **kw: Any) -> dict[str, Any]:
    ns = kw.pop("namespace", wid.split("/")[0])
    return {
        "workload_id": wid,
        "kind": "pod",
        "namespace": ns,
        "node_id": node_id,
        "labels": {"team": team} if team else {},
        "source": "test",
        **kw,
    }


def whole_case() -> dict[str, Any]:
    # H100 at $3.00/GPU-h. a/w1 holds it 40 min at 50 % busy: 2/3 h x 3 = $2.00, waste
    # $1.00, efficiency 0.5. 20 idle min: $1.00 in __idle__. Asset: $3.00.
    samples = [r for t in minutes(40) for r in sample(t, "n1", "g0", [("a/w1", 1, 1, 0.5)])]
    samples += [r for t in minutes(20, 40) for r in sample(t, "n1", "g0", [(None, 1, 1, 0)])]
    return {
        "config": {"prices": {"gpu_models": {"H100": 3.00}}},
        "nodes": [node("n1", "NVIDIA H100 80GB HBM3")],
        "workloads": [pod("a/w1", "a", "n1")],
        "samples": samples,
        "asset": "3.00",
        "rows": {
            ("a",): {
                "gpu_hours": "0.666667",
                "total_cost": "2.00",
                "waste_cost": "1.00",
                "gpu_efficiency": "0.5",
            },
            (IDLE,): {"gpu_hours": "0.333333", "total_cost": "1.00", "waste_cost": "0"},
        },
    }


def mig_case() -> dict[str, Any]:
    # A100 at $7.00/GPU-h cut in 7 slices of $1.00/h. a/w1 and b/w2 hold one slice each for
    # the hour (busy 80 % and 50 % of their slice); 5 slices idle: $5.00.
    samples = [
        r
        for t in minutes(60)
        for r in sample(
            t,
            "n2",
            "g0",
            [
                ("a/w1", 1 / 7, 1 / 7, 0.8 / 7),
                ("b/w2", 1 / 7, 1 / 7, 0.5 / 7),
                (None, 5 / 7, 5 / 7, 0),
            ],
        )
    ]
    return {
        "config": {"prices": {"gpu_models": {"A100 40GB": 7.00}}},
        "nodes": [node("n2", "NVIDIA A100-SXM4-40GB", mig_strategy="mixed")],
        "workloads": [
            pod("a/w1", "a", "n2", gpu_resource="nvidia.com/mig-1g.5gb"),
            pod("b/w2", "b", "n2", gpu_resource="nvidia.com/mig-1g.5gb"),
        ],
        "samples": samples,
        "asset": "7.00",
        "rows": {
            ("a",): {
                "gpu_hours": "0.142857",
                "total_cost": "1.00",
                "waste_cost": "0.20",
                "gpu_efficiency": "0.8",
            },
            ("b",): {
                "gpu_hours": "0.142857",
                "total_cost": "1.00",
                "waste_cost": "0.50",
                "gpu_efficiency": "0.5",
            },
            (IDLE,): {"gpu_hours": "0.714286", "total_cost": "5.00"},
        },
    }


def timeslice_samples() -> list[dict[str, Any]]:
    # A10G time-sliced 4 ways at $4.00/h. a/w1 and b/w2 each request one replica (1/4);
    # measured SM use 30 % and 10 % of the device, so usage shares are 3/4 and 1/4.
    return [
        r
        for t in minutes(60)
        for r in sample(
            t,
            "n3",
            "g0",
            [("a/w1", 0.25, 0.75, 0.30), ("b/w2", 0.25, 0.25, 0.10), (None, 0.5, 0, 0)],
        )
    ]


def shared_request_case() -> dict[str, Any]:
    # request: $1.00 each, half the GPU idle ($2.00). w1 used 0.3 h of 0.25 h held
    # (efficiency capped at 1, no waste); w2 0.1 of 0.25: efficiency 0.4, waste $0.60.
    return {
        "config": {"prices": {"gpu_models": {"A10G": 4.00}}},
        "nodes": [node("n3", "NVIDIA A10G", gpu_replicas=4)],
        "workloads": [pod("a/w1", "a", "n3"), pod("b/w2", "b", "n3")],
        "samples": timeslice_samples(),
        "asset": "4.00",
        "rows": {
            ("a",): {
                "gpu_hours": "0.25",
                "total_cost": "1.00",
                "waste_cost": "0",
                "gpu_efficiency": "1",
            },
            ("b",): {
                "gpu_hours": "0.25",
                "total_cost": "1.00",
                "waste_cost": "0.60",
                "gpu_efficiency": "0.4",
            },
            (IDLE,): {"gpu_hours": "0.5", "total_cost": "2.00"},
        },
    }


def shared_usage_case() -> dict[str, Any]:
    # usage: the whole device split 3:1 -> $3.00 and $1.00, nothing idle. w1 used 0.3 of
    # 0.75 h: efficiency 0.4, waste $1.80; w2 0.1 of 0.25 h: 0.4, waste $0.60.
    case = shared_request_case()
    case["shared_gpu"] = "usage"
    case["rows"] = {
        ("a",): {
            "gpu_hours": "0.75",
            "total_cost": "3.00",
            "waste_cost": "1.80",
            "gpu_efficiency": "0.4",
        },
        ("b",): {
            "gpu_hours": "0.25",
            "total_cost": "1.00",
            "waste_cost": "0.60",
            "gpu_efficiency": "0.4",
        },
    }  # nothing idle: no __idle__ row
    return case


def idle_base() -> dict[str, Any]:
    # Two GPUs at $1.00/h. a/w1 holds g0 all hour ($1.00); b/w2 holds g1 for 30 min
    # ($0.50); g1 is idle 30 min ($0.50).
    samples = [r for t in minutes(60) for r in sample(t, "n4", "g0", [("a/w1", 1, 1, 1)])]
    samples += [r for t in minutes(30) for r in sample(t, "n4", "g1", [("b/w2", 1, 1, 1)])]
    samples += [r for t in minutes(30, 30) for r in sample(t, "n4", "g1", [(None, 1, 1, 0)])]
    return {
        "config": {"prices": {"gpu_models": {"L4": 1.00}}},
        "nodes": [node("n4", "NVIDIA L4", gpus=2)],
        "workloads": [pod("a/w1", "a", "n4"), pod("b/w2", "b", "n4")],
        "samples": samples,
        "asset": "2.00",
    }


def idle_weighted_case() -> dict[str, Any]:
    # weighted by GPU cost 1.00 : 0.50 -> w1 gets 2/3 of $0.50, w2 1/3.
    case = idle_base()
    case["idle"] = "weighted"
    case["rows"] = {
        ("a",): {"total_cost": "1.333333", "idle_cost": "0.333333", "gpu_hours": "1"},
        ("b",): {"total_cost": "0.666667", "idle_cost": "0.166667", "gpu_hours": "0.5"},
        (IDLE,): {"total_cost": "0", "gpu_hours": "0.5"},
    }
    return case


def idle_even_case() -> dict[str, Any]:
    case = idle_base()
    case["idle"] = "even"
    case["rows"] = {
        ("a",): {"total_cost": "1.25", "idle_cost": "0.25"},
        ("b",): {"total_cost": "0.75", "idle_cost": "0.25"},
        (IDLE,): {"total_cost": "0"},
    }
    return case


def unpriced_case() -> dict[str, Any]:
    # An instance type nobody knows: its hour goes to __unpriced__ at no cost; asset $0.
    samples = [r for t in minutes(60) for r in sample(t, "n5", "g0", [("a/w1", 1, 1, 1)])]
    return {
        "config": {},
        "nodes": [node("n5", "NVIDIA B200", instance_type="x9.mega", provider="aws")],
        "workloads": [pod("a/w1", "a", "n5")],
        "samples": samples,
        "asset": "0",
        "rows": {(UNPRICED,): {"gpu_hours": "1", "total_cost": "0"}},
        "unpriced": [("n5", "unknown instance type 'x9.mega'")],
    }


def unallocated_shared_case() -> dict[str, Any]:
    # $2.00/h. An unlabelled pod in `sandbox` for 30 min ($1.00) is __unallocated__; a
    # kube-system pod for 30 min ($1.00) is __shared__.
    samples = [r for t in minutes(30) for r in sample(t, "n6", "g0", [("sandbox/x", 1, 1, 1)])]
    samples += [
        r for t in minutes(30, 30) for r in sample(t, "n6", "g0", [("kube-system/y", 1, 1, 1)])
    ]
    return {
        "config": {"prices": {"gpu_models": {"T4": 2.00}}},
        "nodes": [node("n6", "Tesla T4")],
        "workloads": [pod("sandbox/x", None, "n6"), pod("kube-system/y", None, "n6")],
        "samples": samples,
        "asset": "2.00",
        "rows": {(UNALLOCATED,): {"total_cost": "1.00"}, (SHARED,): {"total_cost": "1.00"}},
    }


def cpu_ram_case() -> dict[str, Any]:
    # p3.2xlarge from the catalog: $3.06/h, 8 vCPU, 61 GiB. CPU part 8 x 0.031611 =
    # 0.252888; RAM part 61 x 0.004237 = 0.258457; GPU part 3.06 - 0.511345 = 2.548655.
    # a/w1: GPU all hour + 4 cores + 30.5 GiB -> 2.548655 + 0.126444 + 0.1292285.
    # b/w2: request 1 core, uses 2 -> max = 2 cores = 0.063222.
    # idle: CPU 0.252888 - 0.126444 - 0.063222 = 0.063222; RAM 0.1292285 -> 0.1924505.
    samples = [r for t in minutes(60) for r in sample(t, "n7", "g0", [("a/w1", 1, 1, 1)])]
    return {
        "config": {},
        "nodes": [
            node(
                "n7",
                "Tesla V100-SXM2-16GB",
                instance_type="p3.2xlarge",
                provider="aws",
                cpu_cores=8.0,
                memory_gib=61.0,
            )
        ],
        "workloads": [
            pod(
                "a/w1",
                "a",
                "n7",
                cpu_request=4.0,
                mem_request_gib=30.5,
                start_ms=T0,
                end_ms=T0 + 60 * MIN,
            ),
            pod(
                "b/w2", "b", "n7", cpu_request=1.0, cpu_usage=2.0, start_ms=T0, end_ms=T0 + 60 * MIN
            ),
        ],
        "samples": samples,
        "asset": "3.06",
        "rows": {
            ("a",): {
                "gpu_cost": "2.548655",
                "cpu_cost": "0.126444",
                "ram_cost": "0.1292285",
                "total_cost": "2.8043275",
            },
            ("b",): {
                "gpu_cost": "0",
                "cpu_cost": "0.063222",
                "ram_cost": "0",
                "total_cost": "0.063222",
            },
            (IDLE,): {
                "gpu_cost": "0",
                "cpu_cost": "0.063222",
                "ram_cost": "0.1292285",
                "total_cost": "0.1924505",
            },
        },
    }


CASES = {
    "whole": whole_case,
    "mig": mig_case,
    "shared-by-request": shared_request_case,
    "shared-by-usage": shared_usage_case,
    "idle-weighted": idle_weighted_case,
    "idle-even": idle_even_case,
    "unpriced": unpriced_case,
    "unallocated-and-shared": unallocated_shared_case,
    "cpu-ram": cpu_ram_case,
}


@pytest.mark.parametrize("name", list(CASES))
def test_allocation_case(name: str, make_service: Any) -> None:
    case = CASES[name]()
    svc = make_service(case["config"])
    load_facts(svc, case["nodes"], case["workloads"], case["samples"])
    report = svc.cost(
        window=window(1), by=["team"], idle=case.get("idle"), shared_gpu=case.get("shared_gpu")
    )
    assert abs(report.asset_cost - Decimal(case["asset"])) < E
    assert abs(report.total_cost - report.asset_cost) < E
    rows = {tuple(r.key.values()): r for r in report.rows}
    for key, expected in case["rows"].items():
        assert key in rows, f"no row {key}; rows: {list(rows)}"
        row = rows[key]
        for field, value in expected.items():
            actual = getattr(row, field)
            assert actual is not None, f"{key} {field} is None"
            assert abs(actual - Decimal(value)) < E, f"{key} {field}: {actual} != {value}"
    assert set(rows) == set(case["rows"]), f"unexpected rows: {set(rows) - set(case['rows'])}"
    assert [(u.node, u.reason) for u in report.unpriced] == case.get("unpriced", [])


def test_report_json_shape(make_service: Any) -> None:
    case = whole_case()
    svc = make_service(case["config"])
    load_facts(svc, case["nodes"], case["workloads"], case["samples"])
    doc = svc.cost(window=window(1), by=["team", "gpu-model"]).to_dict()
    assert doc["window"] == {"start": "2026-11-23T00:00:00Z", "end": "2026-11-23T01:00:00Z"}
    assert doc["currency"] == "USD" and doc["asset_cost"] == 3.0
    first = doc["rows"][0]
    assert first["key"] == {"team": "a", "gpu_model": "NVIDIA H100 80GB HBM3"}
    for field in ("gpu_hours", "gpu_cost", "total_cost", "gpu_efficiency", "waste_cost"):
        assert field in first
    assert first["efficiency_signal"] == "test-signal"
    assert doc["rows"][1]["key"] == {"team": IDLE, "gpu_model": IDLE}
    assert sum(r["total_cost"] for r in doc["rows"]) == pytest.approx(doc["asset_cost"])


def test_team_filter_and_per_step(make_service: Any) -> None:
    case = idle_base()
    svc = make_service(case["config"])
    load_facts(svc, case["nodes"], case["workloads"], case["samples"])
    only_a = svc.cost(window=window(1), by=["team"], team="a")
    assert [tuple(r.key.values()) for r in only_a.rows] == [("a",)]
    # 30-minute steps: b/w2 ran only in the first; g1 idle only in the second
    steps = svc.cost(window=window(1), by=["team"], step="30m")
    got = {(r.start, r.key["team"]): r.total_cost for r in steps.rows}
    assert got[("2026-11-23T00:00:00Z", "b")] == Decimal("0.5")
    assert got[("2026-11-23T00:30:00Z", IDLE)] == Decimal("0.5")
    assert ("2026-11-23T00:30:00Z", "b") not in got


HOUR = 60 * MIN
DAY = 24 * HOUR


def cpu_days_case(over: bool) -> dict[str, Any]:
    """Three days of CPU requests at one-hour steps (the default for a 3-day window), with
    no step in the output: charged from each job's place on its node's present time.

    Node a ($13/h: its GPU at $3/h, 10 cores and no memory, so its CPU is $10/h, $1 a
    core-hour) has samples on days 1 and 3 only (48 h: GPU $144, CPU $480, all GPU idle):
      a/w0 0.5 cores from before the window, never ended: 48 h present x 0.5 = $24;
      a/w1 2 cores from day 1 12:00 to day 3 06:00: 12 h + 6 h present (day 2 is a gap
      inside its run) x 2 = $36;
      a/w2 1 core from day 2 00:00 to day 3 12:00, its first step in the gap: 12 h = $12.
      team a: $72; CPU idle 480 - 72 = $408.
    With `over`, node b ($7/h: GPU $3/h, 4 cores, $4/h), 72 h present (GPU $216 idle):
      b/w1 3 cores all along, b/w2 2 cores all day 2: day 2 wants 5 > 4 cores, scaled by
      4/5: b/w1 72 + 57.6 + 72 = $201.6, b/w2 48 x 0.8 = $38.4; team b $240; CPU idle
      24 + 0 + 24 = $48.
    And node c ($7/h as b), 72 h, c/w1 4 cores all along: its wants are exactly its cost
    (not over): $288, idle 0."""
    t0 = T0
    nodes = [node("a", "NVIDIA H100 80GB HBM3", instance_type="test.a", cpu_cores=10.0)]
    hours_a = [*range(0, 24), *range(48, 72)]
    samples = [
        r for h in hours_a for r in sample(t0 + h * HOUR, "a", "g0", [(None, 1, 1, 0)], HOUR)
    ]
    workloads = [
        pod("a/w0", "a", "a", cpu_request=0.5, start_ms=t0 - 10 * HOUR),
        pod("a/w1", "a", "a", cpu_request=2.0, start_ms=t0 + 12 * HOUR, end_ms=t0 + 54 * HOUR),
        pod("a/w2", "a", "a", cpu_request=1.0, start_ms=t0 + DAY, end_ms=t0 + 60 * HOUR),
    ]
    rows = {("a",): {"cpu_cost": "72", "gpu_cost": "0", "total_cost": "72"}}
    idle_gpu, idle_cpu, asset = Decimal(144), Decimal(408), Decimal(624)
    if over:
        for n in ("b", "c"):
            nodes.append(node(n, "NVIDIA H100 80GB HBM3", instance_type="test.b", cpu_cores=4.0))
            samples += [
                r
                for h in range(72)
                for r in sample(t0 + h * HOUR, n, "g0", [(None, 1, 1, 0)], HOUR)
            ]
        workloads += [
            pod("b/w1", "b", "b", cpu_request=3.0, start_ms=t0, end_ms=t0 + 3 * DAY),
            pod("b/w2", "b", "b", cpu_request=2.0, start_ms=t0 + DAY, end_ms=t0 + 2 * DAY),
            pod("c/w1", "c", "c", cpu_request=4.0, start_ms=t0, end_ms=t0 + 3 * DAY),
        ]
        rows[("b",)] = {"cpu_cost": "240", "total_cost": "240"}
        rows[("c",)] = {"cpu_cost": "288", "total_cost": "288"}
        idle_gpu, idle_cpu, asset = idle_gpu + 216 + 216, idle_cpu + 48 + 0, asset + 504 + 504
    rows[(IDLE,)] = {
        "gpu_cost": str(idle_gpu),
        "cpu_cost": str(idle_cpu),
        "total_cost": str(idle_gpu + idle_cpu),
    }
    return {
        "config": {
            "prices": {
                "gpu_models": {"H100": 3.00},
                "instance_types": {"test.a": 13.00, "test.b": 7.00},
            }
        },
        "nodes": nodes,
        "workloads": workloads,
        "samples": samples,
        "asset": str(asset),
        "rows": rows,
    }


@pytest.mark.parametrize("over", [False, True], ids=["under-caps", "a-node-day-over"])
def test_cpu_charges_over_days_with_gaps_and_caps(
    over: bool, make_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of charging CPU (a job's present time, or its steps where a node-step is
    near or over its cap) give the hand-worked money; the per-step way runs only where a
    node-step needs it (watched, not replaced)."""
    from aifinops.store import allocate

    case = cpu_days_case(over)
    svc = make_service(case["config"])
    load_facts(svc, case["nodes"], case["workloads"], case["samples"])
    stepped: list[int] = []
    real = allocate._step_charges
    monkeypatch.setattr(allocate, "_step_charges", lambda *a: stepped.append(1) or real(*a))
    report = svc.cost(window=window(72), by=["team"])
    assert stepped == ([1] if over else [])
    assert report.asset_cost == Decimal(case["asset"])
    assert report.total_cost == report.asset_cost
    rows = {tuple(r.key.values()): r for r in report.rows}
    assert set(rows) == set(case["rows"])
    for key, expected in case["rows"].items():
        for name, value in expected.items():
            assert getattr(rows[key], name) == Decimal(value), (key, name)
