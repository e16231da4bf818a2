"""`aifinops demo`: a week of a mixed GPU fleet plus the real H100 capture, then reports."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aifinops.config import load_settings
from aifinops.core.model import CostReport
from aifinops.core.windows import Window, from_ms
from aifinops.demo.capture import (
    CAPTURE_HOST,
    h100_capture_dir,
    owners_from_events,
    vllm_scrapes,
)
from aifinops.demo.fleet import demo_fleet
from aifinops.service import IngestResult, Progress, Service

CAPTURE_NAMESPACE = "lab"  # the capture's pods, as the demo names them
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
            owners=owners_from_events(
                capture_dir / "workload_events.jsonl", namespace=CAPTURE_NAMESPACE
            ),
        )
        served = _serving_counters(svc, capture_dir / "workload_events.jsonl")
        window = Window(from_ms(fleet.start_ms), from_ms(fleet.end_ms))
        span = f"{window.start.isoformat()},{window.end.isoformat()}"
        by_team = svc.cost(window=span, by=["team"])
        by_model = svc.cost(window=span, by=["model"], unit="tokens" if served else None)
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


def _serving_counters(svc: Service, events: Path) -> int:
    """The capture's model servers' counters, as vLLM's /metrics would have given them at
    their start and at the end (from the requests in its event log), through the same
    ingest as a real scrape: so the demo shows what a request and 1M tokens cost."""
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (pod, at_ms, text) in enumerate(vllm_scrapes(events)):
            scrape = Path(tmp) / f"{pod}-{n}.metrics"
            scrape.write_text(text, encoding="utf-8")
            at = from_ms(at_ms).isoformat()
            for result in svc.ingest_inference([str(scrape)], server="vllm", at=at,
                                               pod=f"{CAPTURE_NAMESPACE}/{pod}"):  # fmt: skip
                rows += result.rows
    return rows
