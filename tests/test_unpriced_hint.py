"""An unpriced node whose GPU model is unknown (an agent replay without GPU names) gets an
action, not `gpu_models: {"None": ...}` (issue 12, item 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import MIN, T0, load_facts, sample, window


def test_a_node_of_unknown_gpu_model_gets_a_useful_hint(
    make_service: Any, cli: Any, tmp_path: Path
) -> None:
    svc = make_service(name="u.duckdb")
    node = {"node_id": "gpu-7", "gpu_count": 1, "labels": {}, "source": "agent"}
    hour = range(T0, T0 + 60 * MIN, MIN)
    samples = [r for t in hour for r in sample(t, "gpu-7", "g0", [(None, 1, 1, 0)])]
    load_facts(svc, [node], [], samples)
    (missing,) = svc.missing_prices()
    assert missing["nodes"] == ["gpu-7"] and "None" not in missing["config"]
    assert "prices: {nodes: {NODE: <USD per node-hour>}}" in missing["config"]
    svc.close()
    out = cli("--db", str(tmp_path / "u.duckdb"), "cost", "--window", window(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "gpu-7" in out.stdout and '"None"' not in out.stdout
    assert "its GPU model is unknown" in out.stdout
