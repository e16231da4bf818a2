"""The Grafana dashboards under deploy/grafana/dashboards (issue 17): every panel's PromQL
returns data from a real Prometheus filled from real `/metrics` scrapes of the demo, and
every dashboard has the shape Grafana's dashboard model asks for.

The data: `aifinops demo`'s store, plus job-queue counters for the capture's notebook pod
(the demo has no job counters, and the unit-cost panels show cost per job; that pod names
no model, so its jobs go by their queue) and two
configured sources, one that reads and one whose file is missing (so the service-health
panels have a source up, one stale and a failed run). The real app serves it on
127.0.0.1 with its jobs on (budgets and the monthly projection come from them); five
scrapes in OpenMetrics are given timestamps one minute apart, the last one now, loaded by
`promtool tsdb create-blocks-from openmetrics` and queried at the last one.

Grafana's macros are not PromQL, so each query has them replaced before it is sent:
`$__rate_interval` by 4m (Grafana's value for a 1m scrape interval: four intervals),
`$__range` by 1h, and the dashboards' own variables (`${team:regex}`, `${node:regex}`) by
`.*`, the value of their "All".

The structural check stands in for Grafana's dashboard JSON schema, which is not
published as a standalone file (it is the CUE dashboard kind in Grafana's source,
kinds/dashboard/dashboard_kind.cue) and is not available offline here; it checks what
that schema and Grafana's import would reject: the required keys, schemaVersion, unique
uids and panel ids, a 24-column grid without overlaps, the datasource variable and
targets with expr and refId.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import test_api
from tests.conftest import PrometheusServer, need_binary

serve = test_api.serve  # the real app on a free loopback port

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge"}
STEP = 60  # seconds between the scrapes' timestamps
SCRAPES = 5
MACROS = {"$__rate_interval": "4m", "${__rate_interval}": "4m", "$__range": "1h",
          "${__range}": "1h"}  # fmt: skip
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
# the series the panels need, waited for in the scrape (budgets and the projection come
# from the server's jobs, the sources' series from its collect)
NEEDED = (
    "ai_finops_budget_utilization_ratio",
    "ai_finops_monthly_cost_projection",
    "ai_finops_cost_per_job",
    "ai_finops_source_up",
    "ai_finops_source_last_success_timestamp_seconds",
    "ai_finops_ingest_rows_total",
    "ai_finops_ingest_failures_total",
    "ai_finops_realised_savings_monthly",
)


def _load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return board


def _targets(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in board["panels"] for t in p.get("targets", [])]


def _concrete(expr: str) -> str:
    """The query as Prometheus takes it: Grafana's macros and variables given values."""
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return VARIABLE.sub(".*", expr)


def test_dashboards_are_here() -> None:
    names = {p.stem for p in DASHBOARDS}
    assert names == {"cost-overview", "attribution", "gpu-efficiency", "budgets", "unit-costs",
                     "service-health"}  # fmt: skip
    uids = [_load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids
    readme = (GRAFANA / "README.md").read_text(encoding="utf-8")
    assert all(f"dashboards/{p.name}" in readme for p in DASHBOARDS)
    providers = yaml.safe_load((GRAFANA / "provisioning.yaml").read_text())
    (provider,) = providers["providers"]
    assert providers["apiVersion"] == 1 and provider["type"] == "file"
    assert provider["options"]["path"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    board = _load(path)
    # the keys the dashboard kind requires (editable, graphTooltip, schemaVersion) and those
    # an import needs to place and name it
    keys = ("title", "uid", "editable", "graphTooltip", "schemaVersion", "panels", "templating",
            "time")  # fmt: skip
    for key in keys:
        assert key in board, f"{path.name}: no {key}"
    assert board["schemaVersion"] == 39
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"])  # Grafana's uid limit
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        where = f"{path.name} panel {panel['id']} ({panel.get('title')})"
        assert panel["type"] in PANEL_TYPES, where
        assert panel["title"] and panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) for k in ("x", "y", "w", "h")), where
        assert g["x"] >= 0 and g["w"] >= 1 and g["x"] + g["w"] <= 24, where
        assert g["y"] >= 0 and g["h"] >= 1, where
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]}"
                cells[(x, y)] = where
        assert panel["targets"], where
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for t in panel["targets"]:
            assert t["expr"].strip() and t["refId"], where
            assert t["datasource"] == panel["datasource"], where
            used = {a or b for a, b in VARIABLE.findall(t["expr"])}
            assert used <= set(variables) | {"__rate_interval", "__range"}, (where, used)


def _get(url: str, timeout: float = 30, accept: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return str(r.read().decode())


def _demo_store(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The demo's store and config, with job-queue counters for the capture's notebook pod
    (two scrapes in the capture's hour, the demo's last: 12 jobs, 30 minutes of processing)
    and two sources for the server's collect."""
    from datetime import timedelta

    from aifinops.config import load_settings
    from aifinops.demo.run import run_demo
    from aifinops.service import Service

    demo = run_demo(str(tmp_path / "demo.duckdb"))
    config = yaml.safe_load(Path(demo.config).read_text())
    pod = "lab/jupyter-alice-0"
    scrapes = [(55, 0, 0), (25, 12, 1800)]  # (minutes before the demo's end, jobs, seconds)
    with Service(load_settings(Path(demo.config), env={}, flags={"db": demo.db})) as svc:
        for i, (before, jobs, seconds) in enumerate(scrapes):
            at = (demo.window.end - timedelta(minutes=before)).isoformat()
            path = tmp_path / f"worker-{i}.prom"
            path.write_text(
                f'job_completed_total{{queue="evals"}} {jobs}\n'
                f'job_processing_seconds_total{{queue="evals"}} {seconds}\n'
            )
            svc.ingest_inference([str(path)], at=at, pod=pod, server="jobs")
    # one recommendation applied three days before the demo's end, so the server's ROI
    # measurement has a realised saving to show (the demo applies none)
    end = demo.window.end
    with Service(load_settings(Path(demo.config), env={}, flags={"db": demo.db})) as svc:
        found = svc.optimize(window=f"{(end - timedelta(days=7)).isoformat()},{end.isoformat()}")
        svc.keep_findings(found)
        idle = next(r["id"] for r in svc.recommendations(rule=("idle-gpu",)))
    applied_at = end - timedelta(days=3)
    with Service(load_settings(Path(demo.config), env={}, flags={"db": demo.db}),
                 clock=lambda: applied_at) as svc:  # fmt: skip
        svc.set_finding_status(idle, "applied", None, "grafana-test")
    live = tmp_path / "worker-live.prom"
    live.write_text('job_completed_total{queue="evals"} 12\n')
    config["sources"] = [
        {"name": "queue-worker", "kind": "inference", "url": str(live), "server": "jobs",
         "pod": pod, "interval": "1h"},
        {"name": "gone-worker", "kind": "inference", "url": str(tmp_path / "gone.prom"),
         "interval": "1h"},
    ]  # fmt: skip
    return Path(demo.db), config


def _openmetrics(scrapes: list[str], start: int) -> str:
    """The scrapes as one OpenMetrics text: each family's metadata once, then each series'
    samples in time order, the i-th scrape at `start + i * STEP` seconds."""
    families: dict[str, tuple[list[str], dict[str, list[str]]]] = {}
    for i, text in enumerate(scrapes):
        family = None
        for line in text.splitlines():
            if not line or line == "# EOF":
                continue
            if line.startswith("#"):
                name = line.split(" ")[2]
                meta, _ = families.setdefault(name, ([], {}))
                if line not in meta:
                    meta.append(line)
                family = name
                continue
            assert family is not None, line
            series, _, value = line.rpartition(" ")
            families[family][1].setdefault(series, []).append(f"{value} {start + i * STEP}")
    out = []
    for meta, series in families.values():
        out += meta
        out += [f"{s} {point}" for s, points in series.items() for point in points]
    return "\n".join(out) + "\n# EOF\n"


def test_every_panel_query_returns_data(serve: Any, tmp_path: Path) -> None:
    need_binary("prometheus", "promtool")
    db, config = _demo_store(tmp_path)
    api = serve(db, config, jobs=True)
    accept = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    deadline = time.monotonic() + 60
    while True:  # the jobs' first runs, then the metrics cache (10 s) moving on
        text = _get(api.url + "/metrics", accept=accept)
        missing = [n for n in NEEDED if f"\n{n}{{" not in text]
        if not missing:
            break
        assert time.monotonic() < deadline, f"never scraped: {missing}"
        time.sleep(1)
    scrapes = [text]
    for _ in range(SCRAPES - 1):
        for route in ("/health", "/api/v1/gpu/utilization"):  # requests for the latency panels
            api.get(route)
        scrapes.append(_get(api.url + "/metrics", accept=accept))
    # the last scrape at the time it was taken, the others a minute apart before it (so
    # `time() - ai_finops_source_last_success_timestamp_seconds` is what it would be)
    at = int(time.time())
    start = at - (SCRAPES - 1) * STEP
    prom = PrometheusServer(tmp_path / "prom", _openmetrics(scrapes, start))
    try:
        empty = []
        for path in DASHBOARDS:
            board = _load(path)
            for title, target in _targets(board):
                expr = _concrete(target["expr"])
                query = urllib.parse.urlencode({"query": expr, "time": at})
                got = json.loads(_get(f"{prom.url}/api/v1/query?{query}"))
                assert got["status"] == "success", (path.name, title, expr, got)
                values = [r["value"][1] for r in got["data"]["result"]]
                if not values or all(v == "NaN" for v in values):
                    empty.append(f"{path.name} / {title}: {expr}")
            for v in board["templating"]["list"]:
                if v["type"] == "query":  # label_values(metric, label)
                    found = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["definition"])
                    assert found, (path.name, v["definition"])
                    metric, label = found.groups()
                    match = urllib.parse.urlencode({"match[]": metric, "start": start,
                                                    "end": at})  # fmt: skip
                    got = json.loads(_get(f"{prom.url}/api/v1/label/{label}/values?{match}"))
                    assert got["data"], (path.name, v["name"])
        assert not empty, "queries without data:\n" + "\n".join(empty)
    finally:
        prom.close()
