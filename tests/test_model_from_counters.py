"""A workload's model from its serving counters (issue 12, item 3): where a pod's labels name
no model, `--by model` takes the model its vLLM counters name; a pod serving several models
has its cost split by the tokens each served in the window, and the report says so.

Every case: one node of four L4 GPUs at $4.00/GPU-h, one hour of one-minute samples in the
window [T0, T0 + 1h), each GPU held the whole hour by one pod, so each pod costs $4.00. The
counters are scraped at T0 (all zero: the baseline) and at T0 + 30 min, so what a series
served in the window is its second value.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.model import UNALLOCATED
from aifinops.core.windows import from_ms
from tests.conftest import MIN, T0, load_facts, sample, window

PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"workload_id": f"ml/{name}", "kind": "pod", "namespace": "ml", "name": name,
            "node_id": "srv", "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
            "labels": labels or {}, "source": "test"}  # fmt: skip


def fleet(svc: Any, pods: dict[str, dict[str, str] | None]) -> None:
    """`pods`: name -> labels; pod i holds GPU-i for the whole hour."""
    node = {"node_id": "srv", "gpu_model": "NVIDIA L4", "gpu_count": len(pods),
            "util_signal": "test-signal", "source": "test"}  # fmt: skip
    samples = [
        r
        for i, name in enumerate(pods)
        for t in range(T0, T0 + 60 * MIN, MIN)
        for r in sample(t, "srv", f"GPU-{i}", [(f"ml/{name}", 1.0, 1.0, 0.5)])
    ]
    load_facts(svc, [node], [pod(n, labels) for n, labels in pods.items()], samples)


def serve(svc: Any, tmp_path: Path, name: str, served: dict[str, tuple[int, int, int]]) -> None:
    """Scrapes of pod ml/`name`'s vLLM counters: zero at T0, then `served` at T0 + 30 min,
    model -> (requests, prompt tokens, generation tokens)."""
    for i, (at, scale) in enumerate(((T0, 0), (T0 + 30 * MIN, 1))):
        text = "".join(
            f'vllm:request_success_total{{model_name="{m}",finished_reason="stop"}} {n * scale}\n'
            f'vllm:prompt_tokens_total{{model_name="{m}"}} {p * scale}\n'
            f'vllm:generation_tokens_total{{model_name="{m}"}} {g * scale}\n'
            for m, (n, p, g) in served.items()
        )
        path = tmp_path / f"{name}-{i}.prom"
        path.write_text(text)
        svc.ingest_inference([str(path)], at=from_ms(at).isoformat(), pod=f"ml/{name}")


def by_model(report: Any) -> dict[str, Any]:
    return {r.key["model"]: r for r in report.rows}


def test_unlabelled_pods_take_their_counters_model(make_service: Any, tmp_path: Path) -> None:
    svc = make_service(PRICES)
    fleet(svc, {"one": None, "multi": None, "labelled": {"model": "m3"}, "plain": None})
    serve(svc, tmp_path, "one", {"m1": (10, 600, 400)})  # 1,000 tokens
    serve(svc, tmp_path, "multi", {"m1": (3, 200, 100), "m2": (1, 50, 50)})  # 300 : 100
    serve(svc, tmp_path, "labelled", {"m9": (1, 10, 0)})  # its label wins
    report = svc.cost(window=window(1), by=["model"], unit="tokens")
    rows = by_model(report)
    # m1: ml/one's $4 + 3/4 of ml/multi's $4; m2: 1/4 of it; m3 by label; ml/plain: nothing
    assert {m: r.total_cost for m, r in rows.items()} == {
        "m1": Decimal(7), "m2": Decimal(1), "m3": Decimal(4), UNALLOCATED: Decimal(4)
    }  # fmt: skip
    assert {m: r.gpu_hours for m, r in rows.items()} == {
        "m1": Decimal("1.75"), "m2": Decimal("0.25"), "m3": Decimal(1), UNALLOCATED: Decimal(1)
    }  # fmt: skip
    # cost per 1M tokens: m1 $7 over 1,000 + 300 tokens, m2 $1 over 100 tokens
    m1 = rows["m1"].units.costs(rows["m1"].total_cost, rows["m1"].gpu_hours)
    assert m1["cost_per_1m_tokens"] == pytest.approx(7 / 1300 * 1e6)
    assert m1["cost_per_request"] == pytest.approx(7 / 13)
    m2 = rows["m2"].units.costs(rows["m2"].total_cost, rows["m2"].gpu_hours)
    assert m2["cost_per_1m_tokens"] == pytest.approx(1 / 100 * 1e6)
    assert rows["m3"].units is None and "m9" not in rows
    (note,) = [n for n in report.notes if "serving counters" in n]
    assert "2 workload(s)" in note  # ml/one and ml/multi, not the labelled one
    assert "ml/multi by tokens (m1 75.0%, m2 25.0%)" in note


def test_split_by_requests_or_evenly_and_exact(make_service: Any, tmp_path: Path) -> None:
    svc = make_service(PRICES)
    fleet(svc, {"reqs": None, "idle": None, "sevenths": None})
    # no tokens counted: by requests 1 : 3
    serve(svc, tmp_path, "reqs", {"a": (1, 0, 0), "b": (3, 0, 0)})
    # nothing counted in the window: evenly
    serve(svc, tmp_path, "idle", {"c": (0, 0, 0), "d": (0, 0, 0)})
    # $4 split 1 : 2 : 4 by tokens: the parts are worked in floating point and rounded (an
    # error of ~1e-16 dollars each); the last takes what the others leave, so they add up
    # to $4 but for the last digit of the conversion from cost units (28 digits)
    serve(svc, tmp_path, "sevenths", {"x": (1, 1, 0), "y": (1, 2, 0), "z": (1, 4, 0)})
    report = svc.cost(window=window(1), by=["model", "workload"])
    got = {(r.key["model"], r.key["workload"]): r.total_cost for r in report.rows}
    assert got[("a", "ml/reqs")] == Decimal(1) and got[("b", "ml/reqs")] == Decimal(3)
    assert got[("c", "ml/idle")] == Decimal(2) and got[("d", "ml/idle")] == Decimal(2)
    parts = [got[(m, "ml/sevenths")] for m in "xyz"]
    assert abs(sum(parts) - 4) < Decimal("1e-24")
    for part, sevenths in zip(parts, (4, 8, 16), strict=True):
        assert abs(part - Decimal(sevenths) / 7) < Decimal("1e-9")
    assert abs(report.total_cost - 12) < Decimal("1e-24") and report.asset_cost == 12
    (note,) = [n for n in report.notes if "serving counters" in n]
    assert "ml/reqs by requests (no tokens counted) (a 25.0%, b 75.0%)" in note
    assert "ml/idle evenly (nothing counted) (c 50.0%, d 50.0%)" in note


def test_steps_and_other_dimensions_keep_the_split(make_service: Any, tmp_path: Path) -> None:
    # a namespace-to-team map too: its join and the counters' join side by side
    svc = make_service({**PRICES, "attribution": {"namespace_teams": {"ml": "ml-team"}}})
    fleet(svc, {"multi": {"team": "search"}})
    serve(svc, tmp_path, "multi", {"m1": (3, 200, 100), "m2": (1, 50, 50)})
    # per 30-minute step: $2 a step, 3/4 to m1 and 1/4 to m2 in each
    report = svc.cost(window=window(1), by=["team", "model"], step="30m")
    got = {(r.start, r.key["team"], r.key["model"]): r.total_cost for r in report.rows}
    first, second = (from_ms(t).isoformat().replace("+00:00", "Z") for t in (T0, T0 + 30 * MIN))
    assert got == {
        (first, "search", "m1"): Decimal("1.5"), (first, "search", "m2"): Decimal("0.5"),
        (second, "search", "m1"): Decimal("1.5"), (second, "search", "m2"): Decimal("0.5"),
    }  # fmt: skip
    # without --by model nothing is split and nothing is said
    plain = svc.cost(window=window(1), by=["team"])
    assert [(r.key["team"], r.total_cost) for r in plain.rows] == [("search", Decimal(4))]
    assert not [n for n in plain.notes if "serving counters" in n]
