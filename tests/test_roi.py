"""ROI (issue 15): an applied finding's saving measured before and after on its scope,
`estimate` from the allocation or `confirmed by bill`, and the report's totals.

The lab: L4 GPUs at $4.00 per GPU-hour (no CPU or RAM price). Pod `lab/nb` holds GPU-0
for the first 24 hours at 0 % busy and is then deleted; `lab/train` holds GPU-1 for all
48 hours at 90 % busy. `roi.measure` is 24 h. `idle-gpu` over the first day flags the
notebook: $4 x 24 h / 24 h x 730 h = $2,920.00 a month. It is applied at T0+24h.

Worked on paper:
- before [T0, T0+24h): the notebook cost $96 -> $96 / 24 h x 730 h = $2,920.00 a month;
  after [T0+24h, T0+48h): nothing -> realised $2,920.00 a month (estimate); annual
  $35,040.00.
- fleet after: two GPUs x $4 x 24 h = $192 -> $5,840.00 a month; baseline $5,840 + $2,920
  = $8,760.00; share 2,920 / 8,760 = 33.33 %; payback of $5,000: 5,000 / 2,920 = 1.71 ->
  1.7 months; with $1,000 a month running cost: 5,000 / 1,920 = 2.60 -> 2.6 months.
- Half-way (T0+36h) the same $2,920.00 is provisional: 12 h of the 24 h seen."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.roi import CONFIRMED, ESTIMATE, Measure, Side, summarise
from aifinops.core.windows import from_ms
from aifinops.service import Service
from tests import test_api
from tests.conftest import HOUR, T0, load_facts, sample

PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
CONFIG = {**PRICES, "roi": {"measure": "24h"},
          "recommendations": {"cheaper-offer": {"enabled": False}}}  # fmt: skip
DAY1 = f"{from_ms(T0).isoformat()},{from_ms(T0 + 24 * HOUR).isoformat()}"


class Clock:
    def __init__(self, ms: int):
        self.ms = ms

    def __call__(self) -> Any:
        return from_ms(self.ms)


def lab(svc: Service, nodes: list[dict[str, Any]], nb_node: str, train_node: str,
        nb_gpu: str = "GPU-0", train_gpu: str = "GPU-1") -> None:  # fmt: skip
    pods = [
        {"workload_id": "lab/nb", "kind": "pod", "namespace": "lab", "name": "nb",
         "node_id": nb_node, "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
         "labels": {"team": "ml"}, "start_ms": T0, "end_ms": T0 + 24 * HOUR, "source": "test"},
        {"workload_id": "lab/train", "kind": "pod", "namespace": "lab", "name": "train",
         "node_id": train_node, "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
         "labels": {"team": "ml"}, "start_ms": T0, "end_ms": T0 + 48 * HOUR, "source": "test"},
    ]  # fmt: skip
    samples = []
    for t in range(T0, T0 + 48 * HOUR, HOUR):
        if t < T0 + 24 * HOUR:
            samples += sample(t, nb_node, nb_gpu, [("lab/nb", 1.0, 1.0, 0.0)], HOUR)
        elif nb_node == train_node:  # the node stays: its GPU-0 idle, nobody's
            samples += sample(t, nb_node, nb_gpu, [(None, 1.0, 1.0, 0.0)], HOUR)
        samples += sample(t, train_node, train_gpu, [("lab/train", 1.0, 1.0, 0.9)], HOUR)
    load_facts(svc, nodes, pods, samples)


def node(nid: str, gpus: int) -> dict[str, Any]:
    return {"node_id": nid, "gpu_model": "NVIDIA L4", "gpu_count": gpus, "provider": "aws",
            "resource_id": f"i-{nid}", "source": "test"}  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 24 * HOUR)


def applied_notebook(svc: Service, clock: Clock) -> str:
    found = svc.optimize(window=DAY1, rules=["idle-gpu"])
    assert [(f.scope["workload"], str(f.monthly_saving)) for f in found.findings] == [
        ("lab/nb", "2920.00")]  # fmt: skip
    (fid,) = found.new
    svc.set_finding_status(fid, "applied", None, "alice")  # at T0+24h
    return fid


def bill(svc: Service, tmp_path: Path, lines: list[tuple[str, int, int, str, str]]) -> None:
    from tests.test_reconcile import HEADER, _line

    path = tmp_path / "focus.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        for rid, start, end, effective, listed in lines:
            out.writerow(_line(rid, start, end, "Compute", "Amazon EC2", effective, effective,
                               listed))  # fmt: skip
    svc.ingest_focus([path])


def test_an_idle_notebook_removed_saves_its_run_rate(
    make_service: Callable[..., Service], clock: Clock
) -> None:
    svc = make_service(CONFIG, clock=clock)
    lab(svc, [node("n1", 2)], "n1", "n1")
    fid = applied_notebook(svc, clock)

    clock.ms = T0 + 36 * HOUR  # half the window after
    half = svc.roi(record=True).to_dict()
    (m,) = half["applied"]
    assert (m["id"], m["category"], m["state"], m["basis"], m["window_seen"]) == (
        fid, "idle", "measuring", ESTIMATE, 0.5)  # fmt: skip
    assert (m["realised_monthly"], m["expected_monthly"], m["baseline_monthly"]) == (
        "2920.00", "2920.00", "2920.00")  # fmt: skip
    assert any(n.startswith("provisional: 12:00:00 of the 1 day") for n in m["notes"])
    assert "measured" not in [h["event"] for h in svc.findings.history(fid)]

    clock.ms = T0 + 48 * HOUR
    report = svc.roi(investment=Decimal(5000), record=True)
    out = report.to_dict()
    (m,) = out["applied"]
    assert (m["state"], m["realised_monthly"], m["window_seen"]) == ("measured", "2920.00", 1.0)
    assert (out["realised_monthly"], out["projected_annual"], out["fleet_monthly"],
            out["baseline_monthly"], out["saving_percent"], out["payback_months"],
            out["confirmed_by_bill_monthly"]) == (
        "2920.00", "35040.00", "5840.00", "8760.00", "33.33", "1.7", "0.00")  # fmt: skip
    assert [(c["category"], c["applied"], c["realised_monthly"]) for c in out["categories"]] == [
        ("idle", 1, "2920.00")]  # fmt: skip
    assert report.to_dict() == out  # measuring twice changes nothing
    slower = svc.roi(investment=Decimal(5000), monthly_cost=Decimal(1000)).to_dict()
    assert slower["payback_months"] == "2.6"
    history = [(h["event"], h["detail"]) for h in svc.findings.history(fid)]
    assert history == [("found", None), ("applied", None),
                       ("measured", "2920.00 USD a month (estimate)")]  # fmt: skip
    svc.roi(record=True)  # recorded once
    assert [h["event"] for h in svc.findings.history(fid)].count("measured") == 1


def test_the_bill_confirms_a_saving_when_the_node_goes(
    make_service: Callable[..., Service], clock: Clock, tmp_path: Path
) -> None:
    """The notebook had node `a` (one GPU) to itself; node `a` went with it. The bill:
    i-a $72 for the first day (list $96: a 25 % discount), i-b $144 for both days.
    Before: the notebook's $96 scaled by 72/96 = $72 -> $2,190.00 a month; after: $0. The
    bill of node `a` fell from $72 a day to nothing: $2,190.00 a month. Confirmed by the
    bill: $2,190.00 (the list-price estimate said $2,920.00)."""
    svc = make_service(CONFIG, clock=clock)
    lab(svc, [node("a", 1), node("b", 1)], "a", "b", "GPU-A", "GPU-B")
    fid = applied_notebook(svc, clock)
    bill(svc, tmp_path, [("i-a", T0, T0 + 24 * HOUR, "72", "96"),
                         ("i-b", T0, T0 + 48 * HOUR, "144", "192")])  # fmt: skip
    clock.ms = T0 + 48 * HOUR
    out = svc.roi().to_dict()
    (m,) = out["applied"]
    assert (m["id"], m["basis"], m["realised_monthly"], m["list_saving_monthly"],
            m["baseline_monthly"]) == (fid, CONFIRMED, "2190.00", "2920.00", "2190.00")  # fmt: skip
    assert m["notes"] == []
    assert (out["realised_monthly"], out["confirmed_by_bill_monthly"]) == ("2190.00", "2190.00")


def test_the_bill_does_not_confirm_capacity_that_still_bills(
    make_service: Callable[..., Service], clock: Clock, tmp_path: Path
) -> None:
    """The notebook's GPU was on node n1, which keeps running (its GPU-0 now idle). The
    bill: i-n1 $288 for both days (list $384). The notebook's allocation fell by
    $96 x 288/384 = $72 a day ($2,190.00 a month) but the node's bill did not fall at all:
    realised $0.00 confirmed by bill, and the note says why."""
    svc = make_service(CONFIG, clock=clock)
    lab(svc, [node("n1", 2)], "n1", "n1")
    applied_notebook(svc, clock)
    bill(svc, tmp_path, [("i-n1", T0, T0 + 48 * HOUR, "288", "384")])
    clock.ms = T0 + 48 * HOUR
    (m,) = svc.roi().to_dict()["applied"]
    assert (m["basis"], m["realised_monthly"], m["list_saving_monthly"]) == (
        CONFIRMED, "0.00", "2920.00")  # fmt: skip
    (note,) = m["notes"]
    assert note.startswith("the bill of its node(s) n1 fell by 0.00 a month, less than the "
                           "2190.00 its allocation did")  # fmt: skip


def test_no_applied_findings_shows_the_potential(
    make_service: Callable[..., Service], clock: Clock
) -> None:
    svc = make_service(CONFIG, clock=clock)
    lab(svc, [node("n1", 2)], "n1", "n1")
    svc.optimize(window=DAY1, rules=["idle-gpu"])
    out = svc.roi(investment=Decimal(100)).to_dict()
    assert (out["applied"], out["realised_monthly"], out["potential_monthly"],
            out["payback_months"]) == ([], "0.00", "2920.00", None)  # fmt: skip
    assert [(c["category"], c["potential_monthly"]) for c in out["categories"]] == [
        ("idle", "2920.00")]  # fmt: skip


DROP = Decimal(2000)  # what the bill of the nodes fell by, a month


def side(cost: str, hours: int, billed: str | None = None, start: int = 0) -> Side:
    return Side(start, start + hours * HOUR, Decimal(cost),
                None if billed is None else Decimal(billed), ("n",))  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "before", "after", "drop", "expected", "basis", "realised"),
    [
        # $700 a week -> $350 a week: 700/168x730 - 350/168x730 = 3041.666.. - 1520.833..
        ("rightsize-gpu", side("700", 168), side("350", 168), None, "0", ESTIMATE, "1520.83"),
        # a week before, 3 days after at the same hourly rate: nothing saved
        ("spot-candidate", side("168", 168), side("72", 72), None, "0", ESTIMATE, "0.00"),
        # it cost more after: a negative saving, shown as it is
        ("share-gpu", side("24", 24), side("48", 24), None, "0", ESTIMATE, "-730.00"),
        # billed $48/day -> $12/day: $1,460.00 - $365.00 = $1,095.00; the nodes fell more
        (
            "spot-candidate",
            side("96", 24, "48"),
            side("96", 24, "12"),
            DROP,
            "0",
            CONFIRMED,
            "1095.00",
        ),
        # a commitment without a bill: the finding's estimate
        ("commitments", side("96", 24), side("96", 24), None, "812.34", ESTIMATE, "812.34"),
    ],
)
def test_measure_arithmetic(rule: str, before: Side, after: Side, drop: Decimal | None,
                            expected: str, basis: str, realised: str) -> None:  # fmt: skip
    m = Measure("f", rule, {"workload": "w"}, 0, after.span_ms, Decimal(expected),
                before, after, drop)  # fmt: skip
    assert (m.basis, str(m.realised())) == (basis, realised)


def test_summary_categories_and_payback() -> None:
    """Spot $1,000 + rightsizing $500 realised; sharing $250 open; fleet $10,000 a month:
    baseline $11,500, 13.04 %; investment $3,000 at $1,500 a month: 2.0 months."""
    ms = [Measure("s", "spot-candidate", {}, 0, HOUR, Decimal(0), side("1000", 730),
                  side("0", 730)),
          Measure("r", "overprovisioned-gpus", {}, 0, HOUR, Decimal(0), side("500", 730),
                  side("0", 730))]  # fmt: skip
    out = summarise(ms, {"sharing": Decimal(250)}, currency="EUR",
                    fleet_monthly=Decimal(10000), investment=Decimal(3000)).to_dict()  # fmt: skip
    assert [(c["category"], c["realised_monthly"], c["potential_monthly"])
            for c in out["categories"]] == [("spot", "1000.00", "0.00"),
                                             ("sharing", "0.00", "250.00"),
                                             ("rightsizing", "500.00", "0.00")]  # fmt: skip
    assert (out["baseline_monthly"], out["saving_percent"], out["payback_months"],
            out["projected_annual"], out["currency"]) == (
        "11500.00", "13.04", "2.0", "18000.00", "EUR")  # fmt: skip


serve = test_api.serve  # the fixture: the app on a free loopback port


def test_cli_api_and_metrics(
    make_service: Callable[..., Service],
    clock: Clock,
    tmp_path: Path,
    cli: Callable[..., Any],
    serve: Callable[..., Any],
) -> None:
    """The first test's store through `aifinops cost --roi`, `GET /api/v1/roi`, the
    findings' routes and /metrics: the same $2,920.00 a month, payback 1.7 months."""
    import json

    import yaml

    svc = make_service(CONFIG, clock=clock)
    lab(svc, [node("n1", 2)], "n1", "n1")
    fid = applied_notebook(svc, clock)
    clock.ms = T0 + 48 * HOUR
    svc.optimize(window=DAY1, rules=["idle-gpu"])  # found again: stays applied
    token = svc.create_token("ops", "admin")
    viewer = svc.create_token("grafana", "viewer")
    svc.close()
    db = tmp_path / "store.duckdb"
    cfg = tmp_path / "roi.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "roi": {"measure": "24h", "investment": 5000}}))
    base = ("--db", str(db), "--config", str(cfg))

    out = cli(*base, "cost", "--roi", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["realised_monthly"], doc["payback_months"], doc["applied"][0]["id"]) == (
        "2920.00", "1.7", fid)  # fmt: skip
    table = cli(*base, "cost", "--roi", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "2,920.00" in table.stdout and "1.7 months" in table.stdout
    wrong = cli(*base, "cost", "--roi", "--last", "7d", cwd=tmp_path)
    assert wrong.returncode != 0 and "--last cannot go with --roi" in wrong.stderr

    running = serve(db, {**CONFIG, "roi": {"measure": "24h"}})
    resp = running.get("/api/v1/roi", viewer, investment="2920")
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert (got["realised_monthly"], got["payback_months"], got["saving_percent"]) == (
        "2920.00", "1.0", "33.33")  # fmt: skip
    assert running.get("/api/v1/roi", viewer, investment="-1").status_code == 400
    listed = running.get("/api/v1/recommendations", viewer, status="applied").json()
    assert [r["id"] for r in listed["recommendations"]] == [fid]
    assert running.post(f"/api/v1/recommendations/{fid}/reopen", b"{}", viewer
                        ).status_code == 403  # a viewer sees, an admin acts  # fmt: skip
    no_reason = running.post(f"/api/v1/recommendations/{fid}/dismiss", b"{}", token)
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
    assert running.post("/api/v1/recommendations/idle-gpu-000000000000/apply", b"{}", token
                        ).status_code == 404  # fmt: skip
    assert running.post(f"/api/v1/recommendations/{fid}/delete", b"{}", token).status_code == 400
    reopened = running.post(f"/api/v1/recommendations/{fid}/reopen", b"{}", token).json()
    assert reopened["status"] == "open"
    metrics = running.get("/metrics", viewer).text
    assert ('ai_finops_recommendation_savings_monthly{currency="USD",rule="idle-gpu",'
            'severity="high"} 2920.0') in metrics  # fmt: skip
    assert 'ai_finops_savings_potential_monthly{currency="USD"} 2920.0' in metrics


def test_serve_runs_the_rules_and_measures(
    make_service: Callable[..., Service], clock: Clock, tmp_path: Path, serve: Callable[..., Any]
) -> None:
    """`serve`'s recommendations job on the first test's store: it runs the rules over the
    week up to the newest sample (the notebook found again, still applied), measures the
    applied notebook ($2,920.00 a month, complete: the clock is long past T0+48h), writes
    `measured` to its history once, and /metrics shows the realised saving."""
    svc = make_service(CONFIG, clock=clock)
    lab(svc, [node("n1", 2)], "n1", "n1")
    fid = applied_notebook(svc, clock)
    token = svc.create_token("grafana", "viewer")
    svc.close()
    running = serve(tmp_path / "store.duckdb", CONFIG, jobs=True)
    deadline = time.monotonic() + 60
    while True:
        jobs = {j["name"]: j for j in running.get("/api/v1/jobs", token).json()["jobs"]}
        job = jobs.get("recommendations", {})
        if job.get("runs") and not job.get("running") and (job["last_result"] or job["last_error"]):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)
    assert job["last_error"] is None, job
    assert job["last_result"].endswith("2920.00 USD a month realised"), job
    got = running.get(f"/api/v1/recommendations/{fid}", token).json()
    assert got["status"] == "applied"
    assert [(h["event"], h["detail"]) for h in got["history"]] == [
        ("found", None), ("applied", None),
        ("measured", "2920.00 USD a month (estimate)")]  # fmt: skip
    metrics = running.get("/metrics", token).text
    assert ('ai_finops_realised_savings_monthly{basis="estimate",category="idle",'
            'currency="USD"} 2920.0') in metrics  # fmt: skip


def _holding(**kw: Any) -> Any:
    from aifinops.core.recommend.base import GpuHolding

    base = {"workload": "lab/w", "namespace": "lab", "team": "ml", "kind": "Job", "node": "n1",
            "gpu_model": "H100 80GB", "gpu_memory_mib": 81559.0, "gpus": 1.0,
            "cost_per_hour": Decimal(1), "hours": (), "provider": "aws",
            "region": "us-east-1", "instance_type": "p5.48xlarge"}  # fmt: skip
    return GpuHolding(**{**base, **kw})


@pytest.mark.parametrize(
    ("scope", "holding", "expected"),
    [
        # a workload on another node is still itself
        ({"team": "ml", "namespace": "lab", "workload": "lab/w", "node": "n0"}, {}, True),
        ({"team": "ml", "namespace": "lab", "workload": "lab/x"}, {}, False),
        # share-gpu's joined scope names several
        ({"team": "ml", "namespace": "lab", "workload": "lab/v,lab/w"}, {}, True),
        # a group of runs, moved to another provider: still the group
        (
            {
                "team": "ml",
                "namespace": "lab",
                "kind": "Job",
                "provider": "aws",
                "region": "us-east-1",
                "gpu_model": "H100",
            },
            {"provider": "gcp", "region": "x"},
            True,
        ),
        ({"team": "ml", "namespace": "lab", "kind": "Job", "gpu_model": "A100"}, {}, False),
        (
            {"team": "ml", "namespace": "lab", "kind": "Job", "gpu_model": "H100"},
            {"kind": "Deployment"},
            False,
        ),
        # a commitment's pool
        ({"provider": "aws", "region": "us-east-1", "instance_type": "P5.48xlarge"}, {}, True),
        ({"provider": "aws", "region": "us-west-2", "instance_type": "p5.48xlarge"}, {}, False),
        # what names nothing matches nothing
        ({"team": "__unallocated__"}, {}, False),
    ],
)
def test_scope_matches(scope: dict[str, str], holding: dict[str, Any], expected: bool) -> None:
    from aifinops.core.roi import scope_matches

    assert scope_matches(scope, _holding(**holding)) is expected
