"""Hostile input to the recommendations and ROI (issue 15): what a user mistypes and what an
attacker sends to the API gets a clear error naming what and where (exit code 2 in the CLI,
400/404 in the JSON envelope of the API), and nothing is lost, written twice or counted
twice. The labs are those of test_findings.py (one notebook idle for 10 hours: $1,216.67
a month; the seven seeded findings F1-F7 whose de-duplicated total is $2,116.67) and of
test_roi.py (a notebook at $4.00 an hour deleted after 24 hours: $2,920.00 a month)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aifinops.config import load_settings
from aifinops.core.roi import Measure, Side, summarise
from aifinops.errors import AifinopsError, ConfigError, NotFoundError, UsageError
from aifinops.service import Service
from aifinops.sources.prices.catalog import file_offers
from aifinops.store import findings as stored
from tests import test_api, test_findings, test_roi
from tests.conftest import HOUR, T0

serve = test_api.serve  # the fixture: the app on a free loopback port
LAB = {**test_findings.PRICES, "recommendations": {"cheaper-offer": {"enabled": False}}}


@pytest.fixture
def svc(make_service: Callable[..., Service]) -> Service:
    s = make_service(LAB)
    test_findings.lab(s)
    return s


class Ran:
    """What `aifinops` did: its exit code and output as `main` makes them (an error: its
    message and exit code, no traceback), and the error itself."""

    def __init__(self, code: int, output: str, error: AifinopsError | None):
        self.exit_code, self.output, self.error = code, output, error


def cli(svc: Service, tmp_path: Path, *args: str) -> Ran:
    """`aifinops --db STORE --config CONFIG ARGS` in this process, the service closed."""
    from aifinops.cli.main import app

    db = svc.ctx.settings.db
    svc.close()
    out = CliRunner().invoke(app, ["--db", str(db), "--config",
                                   str(tmp_path / "store.duckdb.yaml"), *args])  # fmt: skip
    if isinstance(out.exception, AifinopsError):
        return Ran(out.exception.exit_code, str(out.exception), out.exception)
    assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
    return Ran(out.exit_code, out.output, None)


def seed_one(svc: Service, name: str) -> None:
    """One of test_findings' seeded findings, stored open."""
    rule, scope, saving, severity = test_findings.SEEDED[name]
    row = {"id": test_findings.IDS[name], "rule": rule, "severity": severity,
           "scope": json.dumps(scope), "evidence": "{}", "monthly_saving": saving,
           "confidence": "0.8", "action": "do it", "patch": None, "currency": "USD"}  # fmt: skip
    with svc.store.transaction():
        stored.upsert(svc.store, [row], T0)


def events(svc: Service, fid: str) -> list[tuple[str, str | None]]:
    return [(h["event"], h["detail"]) for h in svc.findings.history(fid)]


# -- filters ----------------------------------------------------------------------------


def test_an_unknown_rule_is_refused_not_an_empty_list(svc: Service) -> None:
    test_findings.seed(svc)
    with pytest.raises(UsageError, match="unknown rule 'nope'") as e:
        svc.recommendations(rule="nope")
    assert e.value.where == "rule" and "idle-gpu" in (e.value.hint or "")
    with pytest.raises(UsageError, match="unknown rule 'nope'"):
        svc.recommendations(rule=["idle-gpu", "nope"])


def test_a_comma_joined_rule_list_is_the_same_as_repeating_it(svc: Service) -> None:
    # F3 912.50 counts, F4 600 overlaps it, F5 150 counts: 1,062.50 (test_findings' cases)
    test_findings.seed(svc)
    joined = svc.recommendations(rule="rightsize-gpu,share-gpu")
    assert [test_findings.NAMES[r["id"]] for r in joined] == ["F3", "F4", "F5"]
    assert sum(Decimal(r["monthly_saving"]) for r in joined if r["counted"]) == Decimal(
        "1062.50")  # fmt: skip


def test_optimize_refuses_a_bad_filter_before_it_stores_anything(
    svc: Service, tmp_path: Path
) -> None:
    out = cli(svc, tmp_path, "optimize", "--window", test_findings.WINDOW, "--severity", "xx")
    assert out.exit_code == 2, out.output
    reopened = Service(load_settings(tmp_path / "store.duckdb.yaml", env={},
                                     flags={"db": str(tmp_path / "store.duckdb")}))  # fmt: skip
    try:
        assert reopened.recommendations(status=None) == []  # the run was not kept
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (("optimize", "--format", "xml"), "--format"),
        (("optimize", "list", "--format", "csv"), "--format"),
        (("optimize", "show", test_findings.IDS["F6"], "--format", "xml"), "--format"),
        (("optimize", "list", "--rule", "nope"), "rule"),
    ],
)
def test_optimize_refuses_what_it_cannot_do(svc: Service, tmp_path: Path,
                                            args: tuple[str, ...], where: str) -> None:  # fmt: skip
    test_findings.seed(svc)
    out = cli(svc, tmp_path, *args)
    assert (out.exit_code, out.error and out.error.where) == (2, where), out.output


def test_optimize_takes_a_comma_joined_rule_list(svc: Service, tmp_path: Path) -> None:
    out = cli(svc, tmp_path, "optimize", "--window", test_findings.WINDOW,
              "--rule", "idle-gpu,off-hours", "--format", "json")  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert ([f["rule"] for f in doc["findings"]], doc["monthly_saving_total"]) == (
        ["idle-gpu"], "1216.67")  # fmt: skip


def test_an_empty_list_names_the_currency(make_service: Callable[..., Service],
                                          tmp_path: Path) -> None:  # fmt: skip
    out = cli(make_service(LAB), tmp_path, "optimize", "list")
    assert out.exit_code == 0, out.output
    assert "0 open, 0.00 USD a month" in out.output


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"min_monthly_saving": -1}, "min_monthly_saving: Input should be greater than or equal"),
        ({"enabled": "maybe"}, "enabled: Input should be a valid boolean"),
        ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
    ],
)
def test_a_bad_rule_config_is_a_config_error(
    make_service: Callable[..., Service], config: dict[str, Any], message: str
) -> None:
    """Refused when the settings are read (`config show` finds it), naming the rule."""
    with pytest.raises(ConfigError, match="recommendations: .*idle-gpu: " + message):
        make_service({**LAB, "recommendations": {"idle-gpu": config}})


# -- statuses ---------------------------------------------------------------------------


def test_applying_twice_keeps_the_first_application(svc: Service) -> None:
    """Applied at A, applied again later: one `applied` event and A unchanged (the ROI's
    before and after windows are measured from A)."""
    test_findings.seed(svc)
    fid = test_findings.IDS["F7"]
    first = svc.set_finding_status(fid, "applied", None, "alice")
    at = stored.findings(svc.store, status="applied")[0]["status_ms"]
    again = svc.set_finding_status(fid, "applied", None, "bob")
    assert (first["changed"], again["changed"]) == (True, False)
    assert stored.findings(svc.store, status="applied")[0]["status_ms"] == at
    assert events(svc, fid) == [("found", None), ("applied", None)]


def test_dismissing_twice_writes_one_event_and_loses_no_reason(svc: Service) -> None:
    test_findings.seed(svc)
    fid = test_findings.IDS["F6"]
    svc.set_finding_status(fid, "dismissed", "kept for the launch", "alice")
    same = svc.set_finding_status(fid, "dismissed", " kept for the launch ", "alice")
    assert same["changed"] is False
    with pytest.raises(UsageError, match="already dismissed") as e:
        svc.set_finding_status(fid, "dismissed", "another reason", "bob")
    assert "reopen" in (e.value.hint or "")
    assert events(svc, fid) == [("found", None), ("dismissed", "kept for the launch")]
    (kept,) = svc.recommendations(status="dismissed")
    assert kept["reason"] == "kept for the launch"
    assert svc.set_finding_status(fid, "open")["changed"] is True
    assert svc.set_finding_status(fid, "open")["changed"] is False
    assert [e for e, _ in events(svc, fid)] == ["found", "dismissed", "open"]


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("x" * 1_048_576, "at most 1,000 characters"),
        ("ok\x00", "control character"),
        ("\x1b[2Jgone", "control character"),
    ],
)
def test_a_reason_too_long_or_with_control_characters_is_refused(
    svc: Service, reason: str, message: str
) -> None:
    test_findings.seed(svc)
    fid = test_findings.IDS["F6"]
    with pytest.raises(UsageError, match=message) as e:
        svc.set_finding_status(fid, "dismissed", reason, "mallory")
    assert e.value.where == "reason"
    assert events(svc, fid) == [("found", None)]


def test_a_long_unknown_id_is_not_echoed_whole(svc: Service) -> None:
    with pytest.raises(NotFoundError) as e:
        svc.set_finding_status("a" * 10_000, "applied")
    assert len(e.value.message) < 200 and e.value.message.startswith("no finding 'aaaa")


def test_a_missing_reason_names_no_cli_flag(svc: Service) -> None:
    test_findings.seed(svc)
    with pytest.raises(UsageError, match="needs a reason") as e:
        svc.set_finding_status(test_findings.IDS["F6"], "dismissed", None)
    assert e.value.where == "reason"


# -- ROI --------------------------------------------------------------------------------


def test_reapplied_after_a_reopen_is_measured_again(make_service: Callable[..., Service]) -> None:
    """roi.measure 12 h. Applied at T0+12h: before [T0, T0+12h) $48, after [T0+12h,
    T0+24h) $48 -> $0.00 a month, measured at T0+24h. Reopened and applied again then:
    before [T0+12h, T0+24h) $48 = $2,920.00 a month, after [T0+24h, T0+36h) nothing ->
    $2,920.00, and that measurement is written to its history too (once)."""
    clock = test_roi.Clock(T0 + 12 * HOUR)
    svc = make_service({**test_roi.CONFIG, "roi": {"measure": "12h"}}, clock=clock)
    test_roi.lab(svc, [test_roi.node("n1", 2)], "n1", "n1")
    fid = test_roi.applied_notebook(svc, clock)
    clock.ms = T0 + 24 * HOUR
    assert svc.roi(record=True).to_dict()["applied"][0]["realised_monthly"] == "0.00"
    svc.set_finding_status(fid, "open", None, "alice")
    svc.set_finding_status(fid, "applied", None, "alice")
    clock.ms = T0 + 48 * HOUR
    assert svc.roi(record=True).to_dict()["applied"][0]["realised_monthly"] == "2920.00"
    svc.roi(record=True)
    assert [e for e in events(svc, fid) if e[0] == "measured"] == [
        ("measured", "0.00 USD a month (estimate)"),
        ("measured", "2920.00 USD a month (estimate)")]  # fmt: skip


def test_the_window_before_starts_where_the_data_does(
    make_service: Callable[..., Service],
) -> None:
    """roi.measure 48 h, applied at T0+24h; the store's data start at T0. The window
    before is [T0, T0+24h): $96 over 24 h = $2,920.00 a month, not $96 over 48 h of which
    the first 24 hold no data ($1,460.00). After: [T0+24h, T0+48h), where the data end:
    nothing -> $2,920.00, provisional (24 h of the 48 seen)."""
    clock = test_roi.Clock(T0 + 24 * HOUR)
    svc = make_service({**test_roi.CONFIG, "roi": {"measure": "48h"}}, clock=clock)
    test_roi.lab(svc, [test_roi.node("n1", 2)], "n1", "n1")
    test_roi.applied_notebook(svc, clock)
    clock.ms = T0 + 72 * HOUR
    (m,) = svc.roi().to_dict()["applied"]
    assert (m["state"], m["realised_monthly"], m["baseline_monthly"], m["window_seen"]) == (
        "measuring", "2920.00", "2920.00", 0.5)  # fmt: skip
    assert "the data start 1 day, 0:00:00 into the window before it was applied" in m["notes"]


def test_two_applied_findings_on_one_workload_are_counted_once(
    make_service: Callable[..., Service],
) -> None:
    """idle-gpu and spot-candidate both applied on lab/nb at T0+24h: both are measured on
    the same scope ($2,920.00 a month each); the report counts the workload's saving once,
    $2,920.00, not $5,840.00 (the tie goes to the smaller id)."""
    clock = test_roi.Clock(T0 + 24 * HOUR)
    svc = make_service(test_roi.CONFIG, clock=clock)
    test_roi.lab(svc, [test_roi.node("n1", 2)], "n1", "n1")
    idle = test_roi.applied_notebook(svc, clock)
    spot = test_findings.IDS["F7"]  # spot-candidate on team ml, namespace lab, lab/nb
    seed_one(svc, "F7")
    svc.set_finding_status(spot, "applied", None, "alice")
    clock.ms = T0 + 48 * HOUR
    out = svc.roi().to_dict()
    assert [(m["id"], m["realised_monthly"], m["counted"]) for m in out["applied"]] == [
        (idle, "2920.00", True), (spot, "2920.00", False)]  # fmt: skip
    assert (out["realised_monthly"], out["projected_annual"], out["baseline_monthly"]) == (
        "2920.00", "35040.00", "8760.00")  # fmt: skip
    assert [(c["category"], c["applied"], c["realised_monthly"])
            for c in out["categories"] if c["applied"]] == [
        ("spot", 1, "0.00"), ("idle", 1, "2920.00")]  # fmt: skip


def test_open_potential_counts_overlaps_across_categories_once(svc: Service) -> None:
    """The seven seeded findings: `optimize list` totals $2,116.67; the ROI's potential
    is the same, each category holding what counts of it: idle F1 $1,216.67 (F2 a tie it
    loses), rightsizing F5 $150.00 (F3 overlaps F1), spot F7 $500.00, placement F6
    $250.00; sharing's F4 overlaps F1: nothing of it counts."""
    test_findings.seed(svc)
    out = svc.roi().to_dict()
    assert out["potential_monthly"] == "2116.67"
    assert [(c["category"], c["potential_monthly"]) for c in out["categories"]] == [
        ("spot", "500.00"), ("rightsizing", "150.00"), ("idle", "1216.67"),
        ("placement", "250.00")]  # fmt: skip


@pytest.mark.parametrize("investment", ["Infinity", "NaN", "1E+400", "1E+16", "-1"])
def test_an_investment_out_of_range_is_refused(svc: Service, investment: str) -> None:
    with pytest.raises(UsageError, match="investment") as e:
        svc.roi(investment=Decimal(investment))
    assert e.value.where == "investment"


def test_cost_roi_with_an_infinite_investment_exits_2(svc: Service, tmp_path: Path) -> None:
    out = cli(svc, tmp_path, "cost", "--roi", "--investment", "1e400")
    assert out.exit_code == 2, out.output
    assert "investment" in out.output


def test_the_payback_is_of_the_investment_shown() -> None:
    """Realised $0.01 a month (a cent over 730 h before, nothing after). An investment of
    $0.014 is shown as $0.01, and pays back in 0.01 / 0.01 = 1.0 month (not 1.4); one of
    $0.004 is $0.00: no investment, payback 0."""
    before = Side(0, 730 * HOUR, Decimal("0.01"))
    after = Side(730 * HOUR, 1460 * HOUR, Decimal(0))
    m = Measure("f", "idle-gpu", {"workload": "w"}, 730 * HOUR, 730 * HOUR, Decimal(0),
                before, after)  # fmt: skip
    out = summarise([m], {}, currency="USD", fleet_monthly=Decimal(0),
                    investment=Decimal("0.014")).to_dict()  # fmt: skip
    assert (out["realised_monthly"], out["investment"], out["payback_months"]) == (
        "0.01", "0.01", "1.0")  # fmt: skip
    none = summarise([m], {}, currency="USD", fleet_monthly=Decimal(0),
                     investment=Decimal("0.004")).to_dict()  # fmt: skip
    assert (none["investment"], none["payback_months"]) == ("0.00", "0")


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ({"investment": "1e400"}, "roi.investment"),
        ({"monthly_cost": "1E+400"}, "roi.monthly_cost"),
        ({"measure": "1000000d"}, "roi.measure"),
        ({"measure": "9999999999d"}, "roi.measure"),
        ({"last": "99999999999999d"}, "roi.last"),
        ({"every": "9999999999w"}, "roi.every"),
    ],
)
def test_roi_settings_out_of_range_are_refused(tmp_path: Path, roi: dict[str, str],
                                               message: str) -> None:  # fmt: skip
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"roi": roi}))
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(cfg, env={})


# -- the API ----------------------------------------------------------------------------


def test_the_api_refuses_hostile_requests(svc: Service, tmp_path: Path, serve: Any) -> None:
    test_findings.seed(svc)
    admin = svc.create_token("ops", "admin")
    fid = test_findings.IDS["F6"]
    svc.close()
    api = serve(tmp_path / "store.duckdb", LAB)

    def rules(**params: Any) -> Any:
        return api.get("/api/v1/recommendations", admin, **params)

    def post(path: str, body: bytes) -> Any:
        import httpx

        return httpx.post(api.url + path, content=body, timeout=60, headers={
            "Authorization": f"Bearer {admin}", "Content-Type": "application/json"})  # fmt: skip

    nope = rules(rule="nope")
    assert nope.status_code == 400 and nope.json()["error"]["where"] == "rule"
    both = rules(rule=["rightsize-gpu", "share-gpu"]).json()  # ?rule=a&rule=b
    joined = rules(rule="rightsize-gpu,share-gpu").json()
    assert ([test_findings.NAMES[r["id"]] for r in both["recommendations"]],
            both["monthly_saving_total"]) == (["F3", "F4", "F5"], "1062.50")  # fmt: skip
    assert joined == both

    big = json.dumps({"reason": "x" * 1_048_576}).encode()
    refused = post(f"/api/v1/recommendations/{fid}/dismiss", big)
    assert refused.status_code == 400, refused.text[:300]
    assert (refused.json()["error"]["where"], refused.json()["error"]["message"]) == (
        "reason",
        "the reason is 1,048,576 characters; at most 1,000 characters are kept",
    )
    body = json.dumps({"reason": "kept"}).encode()
    first = post(f"/api/v1/recommendations/{fid}/dismiss", body)
    assert first.json()["changed"], first.text[:300]
    again = post(f"/api/v1/recommendations/{fid}/dismiss", body)
    assert (again.status_code, again.json()["changed"]) == (200, False)
    got = api.get(f"/api/v1/recommendations/{fid}", admin).json()
    assert [(h["event"], h["detail"]) for h in got["history"]] == [
        ("found", None), ("dismissed", "kept")]  # fmt: skip
    long_id = post(f"/api/v1/recommendations/{'a' * 5000}/apply", b"{}")
    assert long_id.status_code == 404 and len(long_id.text) < 500


# -- price lists of one's own -----------------------------------------------------------

HEAD = "provider,region,instance_type,gpu_model,gpu_count,on_demand_hourly,commit_1y_hourly\n"
P5 = "aws,us-east-1,p5.48xlarge,H100 80GB,8,80.00,50.00\n"
L2 = "line 2 of the price list: "


def price_list(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "prices.csv"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param((HEAD + P5 + P5).encode(), id="the same row twice"),
        pytest.param((HEAD.replace(",", " , ") + P5).encode(), id="spaced header"),
        pytest.param((HEAD.upper() + P5).encode(), id="upper-case header"),
    ],
)
def test_a_price_list_is_read_exactly_whatever_its_header(tmp_path: Path,
                                                            data: bytes) -> None:  # fmt: skip
    (offer,) = file_offers(price_list(tmp_path, data))
    assert (offer.provider, offer.region, offer.instance_type, offer.gpu_model,
            offer.gpu_count, offer.on_demand_hourly, offer.commit_1y_hourly) == (
        "aws", "us-east-1", "p5.48xlarge", "H100 80GB", 8, Decimal("80.00"),
        Decimal("50.00"))  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the price list is empty"),
        (HEAD, "the price list holds no prices"),
        (
            HEAD + P5 + P5.replace("80.00", "70.00"),
            "lines 2 and 3 of the price list both price aws us-east-1 p5.48xlarge",
        ),
        (HEAD + P5.replace("80.00", "1e400"), L2 + "on_demand_hourly '1e400'"),
        (HEAD + P5.replace("80.00", "99999999999999999999999999999"), L2 + "on_demand_hourly"),
        (HEAD + P5.replace("80.00", "8_0.00"), L2 + "on_demand_hourly '8_0.00'"),
        (HEAD + P5.replace("80.00", "$80.00"), L2 + "on_demand_hourly '$80.00'"),
        (HEAD + P5.replace(",8,", ",1_0,"), L2 + "gpu_count '1_0'"),
        (HEAD + P5.replace(",8,", ",99999999999999999999,"), L2 + "gpu_count"),
        (HEAD + P5.replace("\n", ",extra\n"), "line 2 of the price list has 8 cells, the header 7"),
        (HEAD + "aws,us-east-1,p5\n", "line 2 of the price list has 3 cells, the header 7"),
        (
            HEAD.replace("\n", ",provider\n") + P5.replace("\n", ",gcp\n"),
            "column provider is named twice",
        ),
        (
            HEAD + P5.replace("p5.48xlarge", "p4d.24xlarge") + "\n\n" + P5.replace("80.00", "x"),
            "line 5 of the price list: on_demand_hourly 'x'",
        ),
        (
            "provider,instance_type,gpu_model,gpu_count,on_demand_hourly,gpu_component_hourly\n"
            "aws,p5,H100,8,80,-5\n",
            L2 + "gpu_component_hourly '-5'",
        ),
    ],
)
def test_a_bad_price_list_is_refused_naming_the_line(tmp_path: Path, text: str,
                                                     message: str) -> None:  # fmt: skip
    path = price_list(tmp_path, text.encode())
    with pytest.raises(ConfigError) as e:
        file_offers(path)
    assert message in e.value.message, e.value.message
    assert e.value.where == path


def test_a_price_list_not_in_utf8_says_so(tmp_path: Path) -> None:
    path = price_list(tmp_path, (HEAD + P5.replace("H100 80GB", "H100 é")).encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read the price list") as e:
        file_offers(path)
    assert "UTF-8" in (e.value.hint or "")
