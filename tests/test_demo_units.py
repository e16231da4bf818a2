"""The demo shows unit costs (issue 12, item 3): the capture's model servers' requests and
tokens, counted here from its raw event log, and what a request and 1M tokens cost."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import H100


def test_demo_prints_cost_per_1m_tokens(tmp_path: Path) -> None:
    from aifinops.demo.run import run_demo

    events = [json.loads(x) for x in (H100 / "workload_events.jsonl").read_text().splitlines()
              if x.strip()]  # fmt: skip
    served: dict[str, list[int]] = {}
    for e in events:
        if e["event"] == "request" and e["status"] == "ok":
            got = served.setdefault(e["model"], [0, 0, 0])
            got[0] += 1
            got[1] += e["prompt_tokens"]
            got[2] += e["completion_tokens"]
    assert served["gpt2-medium-randinit"] == [385, 78694, 43226]  # worked from the log once
    result = run_demo(str(tmp_path / "demo.duckdb"))  # its week ends with the capture
    rows = {r.key["model"]: r for r in result.by_model.rows if r.units is not None}
    assert set(rows) == set(served)
    for model, (requests, prompt, generated) in served.items():
        units = rows[model].units
        assert units is not None
        assert (units.requests, units.prompt_tokens, units.generation_tokens) == (
            requests, prompt, generated)  # fmt: skip
        cost = rows[model].total_cost
        per_1m = units.costs(cost, rows[model].gpu_hours)["cost_per_1m_tokens"]
        assert cost > 0 and per_1m == float(cost) / (prompt + generated) * 1e6
