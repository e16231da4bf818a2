"""Findings kept in the store (issue 15, first part): stable ids across runs, a dismissal
that sticks, a history, and the seed's `/api/v1/recommendations` path serving them.

One node of L4 GPUs at $4.00 per GPU-hour; pod `lab/nb` holds GPU-0 for 10 hours at 0 %
busy, pod `lab/train` holds GPU-1 for 24 hours at 90 % busy; the window is those 24 hours
from T0. `idle-gpu` flags the notebook only: its run-rate is $4 x 10/24 x 730 =
$1,216.67 a month (its whole cost, spread over the window, as a month)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.recommend import finding_id, total_saving
from aifinops.core.windows import from_ms
from aifinops.errors import NotFoundError, UsageError
from aifinops.service import Service
from aifinops.store import findings as stored
from tests.conftest import HOUR, T0, load_facts, sample

pytestmark = pytest.mark.engines


PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
WINDOW = f"{from_ms(T0).isoformat()},{from_ms(T0 + 24 * HOUR).isoformat()}"


def lab(svc: Service) -> None:
    node = {"node_id": "n1", "gpu_model": "NVIDIA L4", "gpu_count": 2, "source": "test"}
    pods = [{"workload_id": f"lab/{n}", "kind": "pod", "namespace": "lab", "name": n,
             "node_id": "n1", "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
             "labels": {"team": "ml"}, "start_ms": T0, "end_ms": T0 + hours * HOUR,
             "source": "test"} for n, hours in (("nb", 10), ("train", 24))]  # fmt: skip
    samples = []
    for t in range(T0, T0 + 24 * HOUR, HOUR):
        if t < T0 + 10 * HOUR:
            samples += sample(t, "n1", "GPU-0", [("lab/nb", 1.0, 1.0, 0.0)], HOUR)
        samples += sample(t, "n1", "GPU-1", [("lab/train", 1.0, 1.0, 0.9)], HOUR)
    load_facts(svc, [node], pods, samples)


@pytest.fixture
def svc(make_service: Callable[..., Service]) -> Service:
    s = make_service({**PRICES, "recommendations": {"cheaper-offer": {"enabled": False}}})
    lab(s)
    return s


def test_a_dismissal_sticks_across_runs(svc: Service) -> None:
    first = svc.optimize(window=WINDOW, rules=["idle-gpu"])
    assert [(f.rule, f.scope["workload"], str(f.monthly_saving)) for f in first.findings] == [
        ("idle-gpu", "lab/nb", "1216.67")]  # fmt: skip
    (fid,) = first.new
    listed = svc.recommendations()
    assert [(r["id"], r["status"], r["monthly_saving"]) for r in listed] == [
        (fid, "open", "1216.67")]  # fmt: skip
    with pytest.raises(UsageError, match="needs a reason"):
        svc.set_finding_status(fid, "dismissed", "")
    svc.set_finding_status(fid, "dismissed", "the lab's demo GPU", "alice")
    again = svc.optimize(window=WINDOW, rules=["idle-gpu"])
    assert [f.id for f in again.findings] == [fid] and again.new == []  # the same id
    assert svc.recommendations() == []  # open ones only: it stays dismissed
    (kept,) = svc.recommendations(status="dismissed")
    assert (kept["reason"], kept["scope"]["workload"]) == ("the lab's demo GPU", "lab/nb")
    history = svc.findings.history(fid)
    assert [(h["event"], h["actor"], h["detail"]) for h in history] == [
        ("found", None, None), ("dismissed", "alice", "the lab's demo GPU")]  # fmt: skip
    with pytest.raises(NotFoundError):
        svc.set_finding_status("idle-gpu-000000000000", "applied")


def test_filters(svc: Service) -> None:
    svc.optimize(window=WINDOW, rules=["idle-gpu"])
    assert [r["rule"] for r in svc.recommendations(severity="high")] == ["idle-gpu"]
    assert svc.recommendations(severity="low") == []
    assert svc.recommendations(team="search") == []
    with pytest.raises(UsageError, match="unknown severity"):
        svc.recommendations(severity="urgent")


# -- overlapping findings in the listing ---------------------------------------------------
#
# Seven findings put in the store by hand (savings chosen, ids from their rule and scope):
#   F1 idle-gpu       lab/nb           1,216.67  high    (the lab's own: 4 x 10/24 x 730)
#   F2 off-hours      lab/nb           1,216.67  high    (a tie with F1)
#   F3 rightsize-gpu  lab/nb             912.50  medium
#   F4 share-gpu      lab/nb,lab/web     600.00  medium  (two workloads, comma-joined)
#   F5 rightsize-gpu  lab/web            150.00  medium
#   F6 cheaper-offer  lab's Jobs         250.00  medium  (team data; not a usage rule)
#   F7 spot-candidate lab/nb             500.00  medium  (not a usage rule)
# F1-F4 share lab/nb; F4 and F5 share lab/web. Largest first, a finding counts unless it
# overlaps one that counts: F1 (the tie goes to the smaller id: "idle-gpu-..." before
# "off-hours-...") counts; F2, F3, F4 overlap F1; F7 and F6 overlap nothing; F5 overlaps
# only F4, which does not count, so F5 counts.

NB = {"team": "ml", "namespace": "lab", "workload": "lab/nb"}  # the price rules' scope
ON_N1 = {"node": "n1"}  # the usage rules' scope names the node too
WEB = {"team": "ml", "namespace": "lab", "workload": "lab/web", **ON_N1}
JOBS = {"team": "data", "namespace": "lab", "kind": "Job", "provider": "aws",
        "region": "us-east-1", "gpu_model": "L4"}  # fmt: skip
SEEDED = {
    "F1": ("idle-gpu", {**NB, **ON_N1}, "1216.67", "high"),
    "F2": ("off-hours", NB, "1216.67", "high"),
    "F3": ("rightsize-gpu", {**NB, **ON_N1}, "912.50", "medium"),
    "F4": (
        "share-gpu",
        {"team": "ml", "namespace": "lab", "workload": "lab/nb,lab/web", "node": "n1"},
        "600.00",
        "medium",
    ),
    "F5": ("rightsize-gpu", WEB, "150.00", "medium"),
    "F6": ("cheaper-offer", JOBS, "250.00", "medium"),
    "F7": ("spot-candidate", NB, "500.00", "medium"),
}
IDS = {name: finding_id(r, scope) for name, (r, scope, _, _) in SEEDED.items()}
NAMES = {fid: name for name, fid in IDS.items()}


def seed(svc: Service) -> None:
    rows = [{"id": IDS[name], "rule": r, "severity": sev, "scope": json.dumps(scope),
             "evidence": "{}", "monthly_saving": saving, "confidence": "0.8",
             "action": f"{name}: do it", "patch": None, "currency": "USD"}
            for name, (r, scope, saving, sev) in SEEDED.items()]  # fmt: skip
    with svc.store.transaction():
        stored.upsert(svc.store, rows, T0)


LISTING_CASES = [
    # no filter: counted 1,216.67 (F1) + 500 (F7) + 250 (F6) + 150 (F5) = 2,116.67 of the
    # 4,845.84 listed (1,216.67 x 2 + 912.50 + 600 + 500 + 250 + 150)
    pytest.param(
        {},
        [
            ("F1", ["F2", "F3", "F4"], True),
            ("F2", ["F1", "F3", "F4"], False),
            ("F3", ["F1", "F2", "F4"], False),
            ("F4", ["F1", "F2", "F3", "F5"], False),
            ("F7", [], True),
            ("F6", [], True),
            ("F5", ["F4"], True),
        ],
        "2116.67",
        id="all",
    ),
    # filtered first, grouped after: share-gpu alone overlaps nothing shown -> 600.00
    pytest.param({"rule": "share-gpu"}, [("F4", [], True)], "600.00", id="one-rule"),
    # F3 912.50 counts; F4 overlaps it; F5 overlaps only F4 -> 912.50 + 150 = 1,062.50
    pytest.param(
        {"rule": ["rightsize-gpu", "share-gpu"]},
        [
            ("F3", ["F4"], True),
            ("F4", ["F3", "F5"], False),
            ("F5", ["F4"], True),
        ],
        "1062.50",
        id="two-rules",
    ),
    # medium only (no F1, F2): F3 912.50 + F7 500 + F6 250 + F5 150 = 1,812.50
    pytest.param(
        {"severity": "medium"},
        [
            ("F3", ["F4"], True),
            ("F4", ["F3", "F5"], False),
            ("F7", [], True),
            ("F6", [], True),
            ("F5", ["F4"], True),
        ],
        "1812.50",
        id="medium",
    ),
    pytest.param({"team": "data"}, [("F6", [], True)], "250.00", id="team"),
]


@pytest.mark.parametrize(("filters", "expected", "total"), LISTING_CASES)
def test_listing_says_which_findings_overlap_and_which_count(
    svc: Service, filters: dict[str, Any], expected: list[tuple[str, list[str], bool]],
    total: str,
) -> None:  # fmt: skip
    seed(svc)
    listed = svc.recommendations(**filters)
    assert [(NAMES[r["id"]], sorted(NAMES[o] for o in r["overlaps"]), r["counted"])
            for r in listed] == expected  # fmt: skip
    assert total_saving(listed) == Decimal(total)
    counted = sum(Decimal(r["monthly_saving"]) for r in listed if r["counted"])
    assert counted == Decimal(total)  # the total is the sum of what counts


def test_a_dismissed_finding_hands_the_count_to_the_next(svc: Service) -> None:
    # F1 dismissed: F2 (1,216.67) is the largest open one on lab/nb -> it counts; the
    # total is unchanged, 1,216.67 + 500 + 250 + 150 = 2,116.67
    seed(svc)
    svc.set_finding_status(IDS["F1"], "dismissed", "kept for the demo")
    listed = {NAMES[r["id"]]: r for r in svc.recommendations()}
    assert "F1" not in listed
    assert (listed["F2"]["counted"], sorted(NAMES[o] for o in listed["F2"]["overlaps"])) == (
        True, ["F3", "F4"])  # fmt: skip
    assert total_saving(listed.values()) == Decimal("2116.67")


def test_optimize_prints_the_total_that_counts_once(
    svc: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `optimize list` lists the seven without running the rules. Its total is 2,116.67
    # (see LISTING_CASES), not the 4,845.84 the savings add up to.
    from typer.testing import CliRunner

    from aifinops.cli.main import app

    seed(svc)
    db, config = svc.ctx.settings.db, tmp_path / "store.duckdb.yaml"
    svc.close()
    monkeypatch.setenv("COLUMNS", "250")
    args = ["--db", str(db), "--config", str(config), "optimize", "list"]
    out = CliRunner().invoke(app, [*args, "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert (doc["monthly_saving_total"], doc["currency"]) == ("2116.67", "USD")
    assert len(doc["findings"]) == 7
    table = CliRunner().invoke(app, args)
    assert "7 open, 2,116.67 USD a month" in table.output
    assert "3 not added" in table.output
    assert f"no: {IDS['F1']}" in table.output  # F2, F3 and F4: F1 counts instead


def test_a_finding_not_found_again_is_resolved(svc: Service) -> None:
    """The notebook is found idle over the first day; a later run over the newest data
    (the second day: nothing held, nothing found) resolves it; dismissed and applied
    findings are left alone; found again, it is open again. A run over an older window
    (not holding the newest sample) resolves nothing, nor does one after the data ends (a
    collector that stopped resolves nothing)."""
    first = svc.optimize(window=WINDOW, rules=["idle-gpu"])
    (fid,) = first.new
    old = f"{from_ms(T0 - 24 * HOUR).isoformat()},{from_ms(T0).isoformat()}"
    assert svc.optimize(window=old, rules=["idle-gpu"]).resolved == ()  # not the newest data
    assert [r["id"] for r in svc.recommendations()] == [fid]
    # a window holding the newest sample (the notebook's last hour: under idle-gpu's 4
    # hours, so not found)
    later = f"{from_ms(T0 + 9 * HOUR).isoformat()},{from_ms(T0 + 48 * HOUR).isoformat()}"
    gone = svc.optimize(window=later, rules=["idle-gpu"])
    assert (gone.findings, gone.resolved) == ([], (fid,))
    assert svc.recommendations() == []
    after = f"{from_ms(T0 + 10 * HOUR).isoformat()},{from_ms(T0 + 48 * HOUR).isoformat()}"
    assert svc.optimize(window=after, rules=["idle-gpu"]).resolved == ()
    (r,) = svc.recommendations(status="resolved")
    assert r["id"] == fid
    again = svc.optimize(window=WINDOW, rules=["idle-gpu"])
    assert ([f.id for f in again.findings], again.new) == ([fid], [])
    assert [r["id"] for r in svc.recommendations()] == [fid]
    assert [h["event"] for h in svc.findings.history(fid)] == ["found", "resolved", "found again"]
    svc.set_finding_status(fid, "applied")
    assert svc.optimize(window=later, rules=["idle-gpu"]).resolved == ()  # applied: left alone
    assert svc.recommendations(status="applied")[0]["id"] == fid


def test_a_window_longer_than_the_data_is_cut_to_it(svc: Service) -> None:
    """Six days before the data began and none after it: the same 24 hours are measured,
    so the notebook's saving is the same $1,216.67, not diluted to 10/168 of its cost."""
    wide = f"{from_ms(T0 - 6 * 24 * HOUR).isoformat()},{from_ms(T0 + 24 * HOUR).isoformat()}"
    run = svc.optimize(window=wide, rules=["idle-gpu"])
    assert run.window == (from_ms(T0).isoformat().replace("+00:00", "Z"),
                          from_ms(T0 + 24 * HOUR).isoformat().replace("+00:00", "Z"))  # fmt: skip
    assert [str(f.monthly_saving) for f in run.findings] == ["1216.67"]


def test_a_window_without_samples_says_where_they_are(svc: Service) -> None:
    old = f"{from_ms(T0 - 48 * HOUR).isoformat()},{from_ms(T0 - 24 * HOUR).isoformat()}"
    run = svc.optimize(window=old, rules=["idle-gpu"])
    assert (run.findings, run.resolved) == ([], ())
    assert run.notes == ("the window holds no samples: they run from 2026-11-23T00:00:00Z "
                         "to 2026-11-23T23:00:00Z",)  # fmt: skip
    assert svc.optimize(window=WINDOW, rules=["idle-gpu"]).notes == ()
