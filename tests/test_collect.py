"""`aifinops collect`: sources from the config file, on their intervals, with checkpoints
kept in the store, errors recorded per source, and nothing read twice after a restart."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifinops.config import load_settings
from aifinops.core.windows import from_ms
from aifinops.errors import ConfigError
from aifinops.service import Service
from tests.conftest import H100_PRICE, Served, free_port

PRICES = {"prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": H100_PRICE}}}

SCRAPE = (
    'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",Hostname="n1",modelName="NVIDIA H100 80GB HBM3",'
    'pod="p",namespace="ml"} 50\n'
)


def _service(
    tmp_path: Path, sources: list[dict[str, Any]], clock: Any, db: str = "c.duckdb"
) -> Service:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**PRICES, "sources": sources}))
    return Service(load_settings(cfg, env={}, flags={"db": str(tmp_path / db)}), clock=clock)


def _at(ms: int) -> Any:
    return lambda: datetime.fromtimestamp(ms / 1000, UTC)


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([{"name": "a", "kind": "carbon"}], "unknown kind 'carbon'"),
        ([{"name": "a", "kind": "dcgm"}], "source 'a' (dcgm) needs url"),
        ([{"name": "a", "kind": "slurm", "path": "x"}, {"name": "a", "kind": "slurm", "path": "y"}],
         "source names must be unique: a"),
    ],
)  # fmt: skip
def test_bad_source_config(tmp_path: Path, sources: list[dict[str, Any]], message: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"sources": sources}))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(cfg, env={})


def test_one_failing_source_does_not_stop_the_others(tmp_path: Path, served: Served) -> None:
    served.routes["/metrics"] = [(200, SCRAPE.encode())]
    t0 = 1_795_428_000_000
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    sources = [
        {"name": "good", "kind": "dcgm", "url": served.url("/metrics"), "interval": "30s"},
        {"name": "dead", "kind": "dcgm", "url": dead, "interval": "30s"},
    ]
    svc = _service(tmp_path, sources, _at(t0))
    runs = svc.collect(once=True)
    assert [(r.name, r.status) for r in runs] == [("good", "ok"), ("dead", "failed")]
    assert "cannot reach it" in (runs[1].error or "") and dead in (runs[1].error or "")
    status = {s["name"]: s for s in svc.sources_status()}
    assert status["good"]["state"] == "ok" and status["good"]["rows"] == 1
    assert status["dead"]["state"] == "failing" and status["dead"]["failures"] == 1
    assert svc.store.raw("SELECT ts_ms, workload_id FROM gpu_usage") == [(t0, "ml/p")]
    svc.close()


def test_intervals_decide_what_runs(tmp_path: Path, served: Served) -> None:
    served.routes["/metrics"] = [(200, SCRAPE.encode())]
    t0 = 1_795_428_000_000
    now = [t0]
    clock = lambda: datetime.fromtimestamp(now[0] / 1000, UTC)  # noqa: E731
    sources = [{"name": "g", "kind": "dcgm", "url": served.url("/metrics"), "interval": "30s"}]
    svc = _service(tmp_path, sources, clock)
    for offset in (0, 10_000, 29_000, 30_000, 45_000, 61_000):  # due at 0, 30 s and 60 s
        now[0] = t0 + offset
        svc.collect(seconds=0)
    assert served.hits["/metrics"] == 3
    ts = [r[0] - t0 for r in svc.store.raw("SELECT ts_ms FROM gpu_usage ORDER BY 1")]
    assert ts == [0, 30_000, 61_000]
    assert svc.sources_status()[0]["runs"] == 3
    svc.close()


def test_prometheus_checkpoint_survives_a_restart(
    h100_prom: dict[str, Any], tmp_path: Path
) -> None:
    start, end = h100_prom["start"], h100_prom["end"]
    source = {"name": "prom", "kind": "prometheus", "url": h100_prom["url"], "step": "1s",
              "backfill": "10m", "interval": "1m"}  # fmt: skip
    first = _service(tmp_path, [source], _at(start + 200_000))
    (run,) = first.collect(once=True)
    assert run.status == "ok"
    checkpoint = first.sources_status()[0]["checkpoint"]
    assert checkpoint == from_ms(start + 200_000).isoformat().replace("+00:00", "Z")
    first.close()
    # the collector was down; it comes back after the capture ended and reads on from there
    again = _service(tmp_path, [source], _at(end + 5_000))
    (run,) = again.collect(once=True)
    assert run.status == "ok"
    # one pull of the whole span, for comparison
    whole = _service(tmp_path, [], _at(end + 5_000), db="whole.duckdb")
    window = f"{from_ms(start - 400_000).isoformat()},{from_ms(end + 5_000).isoformat()}"
    whole.ingest_prometheus(h100_prom["url"], window=window, step="1s")
    key = "SELECT ts_ms, gpu_id, workload_id, held_req FROM gpu_usage ORDER BY ALL"
    assert again.store.raw(key) == whole.store.raw(key)  # nothing missed, nothing twice
    cost = lambda svc: {r.key["team"]: r.total_cost for r in svc.cost(window=window).rows}  # noqa: E731
    assert cost(again) == cost(whole)
    again.close()
    whole.close()
