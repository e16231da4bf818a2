"""`aifinops demo`: a week of a mixed GPU fleet plus the real H100 capture, then reports."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from aifinops.config import load_settings
from aifinops.core.model import CostReport
from aifinops.core.windows import Window, from_ms
from aifinops.demo.capture import CAPTURE_HOST, h100_capture_dir, owners_from_events
from aifinops.demo.fleet import demo_fleet
from aifinops.service import IngestResult, Progress, Service

DEMO_CONFIG = """\
# Written by `aifinops demo`. On-prem H100s have no cloud price: price them per GPU-hour.
prices:
  gpu_models:
    "NVIDIA H100 80GB HBM3": 4.00
attribution:
  shared_namespaces: [kube-system, monitoring, gpu-operator]
"""


@dataclass
class DemoResult:
    db: str
    config: str
    window: Window
    nodes: int
    gpus: int
    workloads: int
    samples: int
    capture: IngestResult
    by_team: CostReport
    by_model: CostReport
    by_node: CostReport
    seconds: float


def run_demo(
    db: str, seed: int = 42, days: int = 7, progress: Progress | None = None
) -> DemoResult:
    began = time.perf_counter()
    config = Path(db).with_suffix(".yaml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(DEMO_CONFIG, encoding="utf-8")
    svc = Service(load_settings(config, flags={"db": db}))
    try:
        fleet = demo_fleet(seed=seed, days=days)
        samples = svc.load_fleet(fleet, seed, progress)
        capture_dir = h100_capture_dir()
        capture = svc.ingest_nvidia_smi(
            capture_dir,
            host=CAPTURE_HOST,
            owners=owners_from_events(capture_dir / "workload_events.jsonl", namespace="lab"),
        )
        window = Window(from_ms(fleet.start_ms), from_ms(fleet.end_ms))
        span = f"{window.start.isoformat()},{window.end.isoformat()}"
        by_team = svc.cost(window=span, by=["team"])
        by_model = svc.cost(window=span, by=["model"])
        by_node = svc.cost(window=span, by=["node"])
        return DemoResult(
            db,
            str(config),
            window,
            len(fleet.nodes) + 1,
            fleet.gpu_count() + 1,
            len(fleet.workloads),
            samples + capture.rows,
            capture,
            by_team,
            by_model,
            by_node,
            time.perf_counter() - began,
        )
    finally:
        svc.close()
