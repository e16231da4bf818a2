"""On-prem cost: amortised purchase, power from the measured energy counter (or rated), PUE
and overhead; checked on the real H100 capture's energy counter, phase by phase."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.config import load_settings
from aifinops.core.pricing import NodeFacts, OnPremModel
from aifinops.core.windows import from_ms
from aifinops.service import Service
from tests.conftest import AGENT_HOST, NVML

D = Decimal
MODEL = {"gpu_model": "H100", "purchase_price": 250000, "gpus": 8, "years": 4,
         "residual_percent": 10, "power_price_kwh": 0.12, "pue": 1.4, "rated_watts": 700,
         "overhead_percent": 15}  # fmt: skip


def test_the_model_by_hand() -> None:
    m = OnPremModel(D(250000), 8, D(4), D(10), D("0.12"), D("1.4"), D(700), D(15), gpu_model="H100")
    capital = D(250000) * D("0.9") / (4 * 8760) / 8  # 0.80265... per GPU-hour
    power = D(700) / 1000 * D("0.12") * D("1.4")  # 0.1176 per GPU-hour at rated power
    assert m.per_gpu_hour() == (capital + power) * D("1.15")
    assert m.per_gpu_hour(D(350)) == (capital + power / 2) * D("1.15")
    assert m.applies(NodeFacts("x", gpu_model="NVIDIA H100 80GB HBM3"))
    assert not m.applies(NodeFacts("x", gpu_model="A100"))


def _readings() -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in NVML.read_text().splitlines() if x.strip()]
    return [(round(r["ts"] * 1000), float(r["energy_mj"])) for r in rows if r["event"] == "sample"]


def test_h100_energy_and_power_cost_per_phase(
    agent_service: Any, run_agent: Any, h100_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    svc = agent_service()
    run_agent(svc, tmp_path)
    cfg = tmp_path / "onprem.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({"prices": {"on_prem": [MODEL]}}))
    svc2 = Service(load_settings(cfg, env={}, flags={"db": svc.settings.db}))
    svc.close()
    readings = _readings()

    def counter_before(t: int) -> float:  # the last reading before t (the first one if none)
        before = [e for ts, e in readings if ts < t]
        return before[-1] if before else readings[0][1]

    phases = [e for e in h100_events if e["event"] in ("phase_start", "phase_end")]
    starts = {e["phase"]: round(e["ts"] * 1000) for e in phases if e["event"] == "phase_start"}
    ends = {e["phase"]: round(e["ts"] * 1000) for e in phases if e["event"] == "phase_end"}
    assert len(starts) == 6
    for phase, start in starts.items():
        end = ends[phase]
        joules_mj = counter_before(end) - counter_before(start)
        kwh = joules_mj / 3.6e9
        window = f"{from_ms(start).isoformat()},{from_ms(end).isoformat()}"
        (row,) = svc2.energy(window=window)
        assert row["energy_kwh"] == pytest.approx(kwh, rel=1e-12), phase
        assert row["power_cost"] == pytest.approx(kwh * 0.12 * 1.4, rel=1e-9), phase
    # training draws far more power than the idle baseline, per second
    rate = {
        p: (counter_before(ends[p]) - counter_before(starts[p])) / (ends[p] - starts[p])
        for p in starts
    }
    assert rate["training"] > 3 * rate["idle_baseline"]
    # the node's price uses the measured average power, not the rated 700 W
    watts = (readings[-1][1] - readings[0][1]) / (readings[-1][0] - readings[0][0])  # mJ/ms = W
    (price,) = [p for p in svc2.node_prices()[0] if p.node_id == AGENT_HOST]
    m = OnPremModel(**{k: D(str(v)) if k != "gpu_model" and k != "gpus" else v
                       for k, v in MODEL.items()})  # fmt: skip
    assert price.source == "on-prem:measured-power"
    assert float(price.gpu_hourly) == pytest.approx(float(m.per_gpu_hour(D(str(watts)))), rel=1e-6)
    assert 100 < watts < 400  # this H100 averaged a few hundred watts over the capture
    svc2.close()
