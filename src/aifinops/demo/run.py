"""`aifinops demo`: a week of a mixed GPU fleet plus the real H100 capture, then reports.

By default the fleet runs at fixed dates (DEMO_START, a week to 2026-11-23 11:00 UTC, the
day of the capture). With `end` it ends at that instant instead (`now`: the current hour),
so a live `serve`, budget periods and alert rules see fresh data; the capture then moves
with it (see `_shifted_capture`)."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from aifinops.config import load_settings
from aifinops.core.model import CostReport
from aifinops.core.store_url import is_postgres
from aifinops.core.windows import Window, align_down, from_ms, month_bounds, parse_instant
from aifinops.demo.capture import (
    CAPTURE_HOST,
    h100_capture_dir,
    owners_from_events,
    vllm_scrapes,
)
from aifinops.demo.fleet import DEMO_START, demo_fleet
from aifinops.errors import UsageError
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
# The default fleet's end: the capture (10:34-10:40 that day) lies in its last hour
DEMO_END = DEMO_START + timedelta(days=7)
NEAR = Decimal("0.9")  # the research budget's spend so far, as a share of its limit
# Two budgets (core/budgets.py's shape). research's limit is set when the store is built:
# its month-to-date spend at the demo's end over NEAR, rounded up to two significant digits
# (82-90 % of it: at its 80 % alert, short of 100 %), so `budget status` shows a budget near
# its limit whatever --days and --end. product's spends about 1,900 USD in a 30-day month:
# 5,000 leaves it comfortably under, and its enforcement shows a block in warn mode.
DEMO_BUDGETS = """\
budgets:
  - name: research-gpu
    description: The research team's GPU training, near its limit in this demo.
    monthlyLimit: {research_limit}
    scope: {{teams: [research]}}
    alerts:
      - {{thresholdPercent: 80, severity: warning}}
      - {{thresholdPercent: 100, severity: critical}}
      - {{thresholdPercent: 100, severity: warning, basis: forecast}}
    enforcement: {{action: alert}}
  - name: product-serving
    description: Product's inference serving, comfortably under its limit.
    monthlyLimit: 5000
    scope: {{teams: [product]}}
    alerts:
      - {{thresholdPercent: 80, severity: warning}}
      - {{thresholdPercent: 100, severity: critical}}
    enforcement: {{action: block, mode: warn}}
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
    budgets: list[dict[str, Any]] = field(default_factory=list)  # their status at the end
    # `optimize` over the last week: the open findings (overlaps marked), largest first
    findings: list[dict[str, Any]] = field(default_factory=list)
    # `forecast --by "" --period-end`: the whole fleet's month
    forecast: dict[str, Any] | None = None


def demo_end(
    end: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> datetime | None:
    """When the demo's fleet ends: None for the fixed dates; `now`, the current hour
    (rounded down); else an ISO 8601 time, rounded down to the minute (samples are minutes)."""
    if end is None:
        return None
    if end.strip().lower() == "now":
        return align_down(now(), timedelta(hours=1))
    at = parse_instant(end, what="--end")
    if not datetime(2000, 1, 1, tzinfo=UTC) <= at < datetime(2100, 1, 1, tzinfo=UTC):
        raise UsageError(f"{at.isoformat()} is outside 2000-2100", where="--end")
    return align_down(at, timedelta(minutes=1))


def run_demo(
    db: str,
    seed: int = 42,
    days: int = 7,
    progress: Progress | None = None,
    end: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DemoResult:
    """Build the demo store at `db`, its config beside it, and report on it. `end`: see
    `demo_end`; the fleet's last one-minute sample ends there and its first is `days`
    before."""
    began = time.perf_counter()
    last = demo_end(end, now)
    # the config beside the store file; for a store on a server, in this directory
    config = Path("aifinops-demo.yaml") if is_postgres(db) else Path(db).with_suffix(".yaml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(DEMO_CONFIG, encoding="utf-8")
    svc = Service(load_settings(config, flags={"db": db}))
    try:
        start = DEMO_START if last is None else last - timedelta(days=days)
        fleet = demo_fleet(seed=seed, days=days, start=start)
        samples = svc.load_fleet(fleet, seed, progress)
        shift = timedelta(0) if last is None else last - DEMO_END
        events = h100_capture_dir() / "workload_events.jsonl"
        owners = owners_from_events(events, namespace=CAPTURE_NAMESPACE)
        with tempfile.TemporaryDirectory() as tmp:
            capture_dir = _shifted_capture(Path(tmp) / "h100-run-a", shift)
            capture = svc.ingest_nvidia_smi(capture_dir, host=CAPTURE_HOST, owners=owners)
        served = _serving_counters(svc, events, shift)
        window = Window(from_ms(fleet.start_ms), from_ms(fleet.end_ms))
        research = _spend_to_date(svc, window, "research")
        config.write_text(DEMO_CONFIG + DEMO_BUDGETS.format(
            research_limit=_round_up(research / NEAR)), encoding="utf-8")  # fmt: skip
        span = f"{window.start.isoformat()},{window.end.isoformat()}"
        by_team = svc.cost(window=span, by=["team"])
        by_model = svc.cost(window=span, by=["model"], unit="tokens" if served else None)
        by_node = svc.cost(window=span, by=["node"])
        svc.close()
        with Service(load_settings(config, flags={"db": db})) as again:  # the budgets now
            budgets = [st.to_dict() for st in again.budget_statuses(window.end)]
            again.optimize()  # the recommendations, stored: `optimize list` shows them
            findings = again.recommendations()
            forecast = again.forecast(by=(), period_end=True).to_dict(points=False)
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
            budgets,
            findings,
            forecast,
        )
    finally:
        svc.close()


def _spend_to_date(svc: Service, window: Window, team: str) -> Decimal:
    """A team's spend in the month (UTC) holding the demo's end, as a budget counts it."""
    start = max(month_bounds(window.end)[0], window.start)
    if start >= window.end:
        return Decimal(0)
    report = svc.cost(window=f"{start.isoformat()},{window.end.isoformat()}", by=["team"])
    return sum((r.total_cost + r.idle_cost for r in report.rows if r.key["team"] == team),
               Decimal(0))  # fmt: skip


def _round_up(amount: Decimal) -> str:
    """Up to two significant digits (9,961 -> 10,000; 3,089 -> 3,100); 100 at least."""
    if amount <= 100:
        return "100"
    step = Decimal(10) ** (amount.adjusted() - 1)
    return f"{(amount / step).to_integral_value(ROUND_CEILING) * step:f}"


# the capture's timestamps: the CSVs' first column, pmon/dmon's Date and Time, the XML's
_CSV_TIME = re.compile(r"^()(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})()", re.M)
_DT_TIME = re.compile(r"^(\s*)(\d{8}\s+\d{2}:\d{2}:\d{2})()", re.M)
_XML_TIME = re.compile(r"(<timestamp>)([^<]+)(</timestamp>)")
_FORMATS = {".csv": (_CSV_TIME, "%Y/%m/%d %H:%M:%S"), ".txt": (_DT_TIME, "%Y%m%d    %H:%M:%S"),
            ".xml": (_XML_TIME, "%a %b %d %H:%M:%S %Y")}  # fmt: skip


def _shifted_capture(copy: Path, shift: timedelta) -> Path:
    """The bundled capture's directory, or, where the fleet was moved by `shift`, a copy
    (at `copy`) with every timestamp moved by it: the capture keeps its place in the fleet's
    last hour, 20 to 26 minutes before its end. Its files in the package stay as measured;
    the ingest reads the copy like any nvidia-smi logs. `shift` is whole minutes (ends are),
    so each second falls in the same place within its minute and the costs are the same."""
    source = h100_capture_dir()
    if not shift:
        return source
    copy.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        text = path.read_text(encoding="utf-8")
        if path.suffix in _FORMATS and path.name != "env.txt":
            pattern, fmt = _FORMATS[path.suffix]

            def move(m: re.Match[str], fmt: str = fmt) -> str:
                when = datetime.strptime(m.group(2), fmt) + shift
                return f"{m.group(1)}{when.strftime(fmt)}{m.group(3)}"

            text = pattern.sub(move, text)
        (copy / path.name).write_text(text, encoding="utf-8")
    return copy


def _serving_counters(svc: Service, events: Path, shift: timedelta = timedelta(0)) -> int:
    """The capture's model servers' counters, as vLLM's /metrics would have given them at
    their start and at the end (from the requests in its event log), through the same
    ingest as a real scrape: so the demo shows what a request and 1M tokens cost. `shift`
    moves them with the capture."""
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (pod, at_ms, text) in enumerate(vllm_scrapes(events)):
            scrape = Path(tmp) / f"{pod}-{n}.metrics"
            scrape.write_text(text, encoding="utf-8")
            at = (from_ms(at_ms) + shift).isoformat()
            for result in svc.ingest_inference([str(scrape)], server="vllm", at=at,
                                               pod=f"{CAPTURE_NAMESPACE}/{pod}"):  # fmt: skip
                rows += result.rows
    return rows
