"""Issue 12, "Truth and trust", for what we write: a chargeback whose lines add up to its
TOTAL, CSV cells a spreadsheet will not run, plain decimals in JSON and CSV, per-tag shares
in the table, every `bills summary --by` in its help, and a word on an empty window."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.cli.render import json_text
from aifinops.core.money import plain, round_to_total
from aifinops.outputs.csv_cells import cell, csv_text
from tests.conftest import H100

D = Decimal
EVIL = "=cmd|' /C calc'!A0"
MONTH = "2026-11"
WINDOW = "2026-11-23T10:00:00Z,2026-11-23T11:00:00Z"


# -- rounding to a total (largest remainder) ------------------------------------------------


def test_round_to_total_by_hand() -> None:
    # thirds of a dollar: 0.333... each floors to 0.33 (0.99), one cent is missing; the
    # remainders tie, so it goes to the first
    assert round_to_total([D(1) / 3] * 3) == [D("0.34"), D("0.33"), D("0.33")]
    # 1.005 + 2.004 + 3.001 = 6.010; floors 1.00 + 2.00 + 3.00 = 6.00; the missing cent goes
    # to the largest remainder (0.005), not to the others (0.004, 0.001)
    assert round_to_total([D("1.004"), D("2.005"), D("3.001")]) == [
        D("1.00"), D("2.01"), D("3.00"),
    ]  # fmt: skip
    # rounding each alone gives 0.01 + 0.01 + 0.01 = 0.03 for a whole of 0.018 -> 0.02
    assert round_to_total([D("0.006")] * 3) == [D("0.01"), D("0.01"), D("0.00")]
    # a credit: -1.234 + 0.006 = -1.228 -> -1.23; floors -1.24 and 0.00, one cent to give,
    # remainders 0.006 and 0.006 tie: the first
    assert round_to_total([D("-1.234"), D("0.006")]) == [D("-1.23"), D("0.00")]
    # given the whole (a row's rounded total), the parts add up to it
    assert round_to_total([D("0.335"), D("0.335"), D("0")], total=D("0.67")) == [
        D("0.34"), D("0.33"), D("0.00"),
    ]  # fmt: skip
    # more digits than Decimal's 28 are kept exact: two of ...890.1234567890123 sum to
    # ...780.2469135780246 -> .25; floors .12 + .12, the tie gives the first the cent
    big = D("123456789012345678901234567890.1234567890123")
    assert round_to_total([big, big]) == [
        D("123456789012345678901234567890.13"), D("123456789012345678901234567890.12"),
    ]  # fmt: skip
    assert round_to_total([D("0.00012"), D("0.00013")], 4) == [D("0.0001"), D("0.0001")]
    assert round_to_total([]) == []
    with pytest.raises(ValueError):
        round_to_total([D("0.10")], total=D("0.30"))


def test_chargeback_lines_add_up_to_the_total_on_the_h100_capture(
    capture_service: Any, tmp_path: Path
) -> None:
    out = tmp_path / "chargeback.csv"
    capture_service.export_chargeback(out, month=MONTH, by=["team"])
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    *body, total = rows
    # worked by hand from the capture: seconds held per team (owners from its
    # workload_events) at 4.00 per GPU-hour:
    #   research     82.19 + 31.57 = 113.76 s -> 0.126400   floor 0.12, remainder .0064
    #   search       102.216 s                -> 0.113573   floor 0.11, remainder .0036
    #   data-science 50.099 s                 -> 0.055666   floor 0.05, remainder .0057
    #   product      31.57 s                  -> 0.035078   floor 0.03, remainder .0051
    #   __idle__     93.245 s (no holder)     -> 0.103606   floor 0.10, remainder .0036
    # whole: 390.88 s -> 0.434311 -> 0.43; floors sum to 0.41, so the two largest
    # remainders (research, data-science) get a cent. Rounding each row alone gave 0.44.
    want = {"research": "0.13", "search": "0.11", "data-science": "0.06", "product": "0.03",
            "__idle__": "0.10"}  # fmt: skip
    assert {r["team"]: r["total_cost"] for r in body} == want
    assert total["team"] == "TOTAL" and total["total_cost"] == "0.43"
    assert sum(D(r["total_cost"]) for r in body) == D(total["total_cost"])
    # each row's parts add up to the row (CPU and RAM are unpriced here: all GPU)
    for r in body:
        assert D(r["gpu_cost"]) + D(r["cpu_cost"]) + D(r["ram_cost"]) == D(r["total_cost"])
    # GPU-hours too: 113.76 / 3600 = 0.0316 ... 390.88 / 3600 = 0.108578 -> 0.1086
    assert sum(D(r["gpu_hours"]) for r in body) == D(total["gpu_hours"]) == D("0.1086")


# -- cells a spreadsheet would run ----------------------------------------------------------


def test_cells_by_hand() -> None:
    for text in (EVIL, "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "+"):
        assert cell(text) == "'" + text
    for value, shown in (("-1.50", "-1.50"), ("+3", "+3"), (D("-1.50"), "-1.50"),
                         (-1.5, "-1.5"), ("team-a", "team-a"), (None, ""), ("", ""),
                         (7, "7")):  # fmt: skip
        assert cell(value) == shown
    assert (
        csv_text(["a", "b"], [{"a": EVIL, "b": D("-0.25")}]) == "a,b\n'=cmd|' /C calc'!A0,-0.25\n"
    )


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for value in row:
            if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
                assert re.fullmatch(r"[+-]?\d+(\.\d*)?", value), value


def _run(cli: Any, cwd: Path, *args: str) -> str:
    out = cli("--db", "s.duckdb", "--config", "c.yaml", *args, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return str(out.stdout)


@pytest.fixture
def evil_store(cli: Any, tmp_path: Path) -> Path:
    """The capture with the search team's label set to a formula (owners file), and a bill
    whose untagged resource id is one, beside a credit of -1.50."""
    (tmp_path / "c.yaml").write_text(
        'prices:\n  gpu_models:\n    "NVIDIA H100 80GB HBM3": 4.00\n'
        "bills:\n  required_tags: [team]\n"
    )
    owners = tmp_path / "owners.csv"
    with owners.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pid", "workload", "labels"])
        w.writerow([732, "lab/llm-serve-7d9f4", json.dumps({"team": EVIL})])
        w.writerow([817, "lab/pretrain-job-0", json.dumps({"team": "research"})])
    bill = tmp_path / "bill.csv"
    p = "2026-11-01 00:00:00,2026-11-02 00:00:00,2026-11-01 00:00:00"
    bill.write_text(
        "BilledCost,EffectiveCost,ListCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,"
        "BillingPeriodStart,BillingAccountId,ProviderName,ServiceName,ChargeCategory,"
        "ResourceId,Tags\n"
        f'10.00,10.00,10.00,USD,{p},acct,AWS,EC2,Usage,"{EVIL}",NULL\n'
        f"-1.50,-1.50,0,USD,{p},acct,AWS,EC2,Credit,i-credit,NULL\n"
    )
    _run(cli, tmp_path, "ingest", "nvidia-smi", str(H100), "--host", "lab", "--owners", str(owners))
    _run(cli, tmp_path, "ingest", "focus", str(bill))
    return tmp_path


def test_no_csv_output_carries_a_formula(cli: Any, evil_store: Path) -> None:
    escaped = "'" + EVIL
    # cost --format csv
    rows = _cells(_run(cli, evil_store, "cost", "--by", "team", "--window", WINDOW,
                       "--format", "csv"))  # fmt: skip
    assert escaped in [r[2] for r in rows[1:]]
    _no_formula(rows)
    # export chargeback (stdout, and the file)
    rows = _cells(_run(cli, evil_store, "export", "chargeback", "--month", MONTH))
    assert escaped in [r[0] for r in rows]
    _no_formula(rows)
    _run(cli, evil_store, "export", "chargeback", "--month", MONTH, "-o", "cb.csv")
    assert _cells((evil_store / "cb.csv").read_text()) == rows
    # export focus, CSV: the label in SubAccountId, x_Team, ResourceId (the workload's
    # description starts with its name, not the team); Parquet keeps the raw value
    _run(cli, evil_store, "export", "focus", "-o", "f.csv")
    with (evil_store / "f.csv").open(newline="") as fh:
        focus = list(csv.DictReader(fh))
    assert escaped in {r["SubAccountId"] for r in focus} and escaped in {r["x_Team"] for r in focus}
    _no_formula(_cells((evil_store / "f.csv").read_text()))
    _run(cli, evil_store, "export", "focus", "-o", "f.parquet")
    import pyarrow.parquet as pq

    assert EVIL in set(pq.read_table(evil_store / "f.parquet").column("x_Team").to_pylist())
    # tags report --format csv: the bill's resource id; the credit stays a number
    rows = _cells(_run(cli, evil_store, "tags", "report", "--format", "csv"))
    by_id = {r[0]: r for r in rows[1:]}
    assert set(by_id) == {escaped, "i-credit"}
    assert by_id[escaped][3] == "10.0" and by_id["i-credit"][3] == "-1.5"
    _no_formula(rows)
    # JSON is not a spreadsheet: it keeps the label as it is
    doc = json.loads(_run(cli, evil_store, "cost", "--by", "team", "--window", WINDOW,
                          "--format", "json"))  # fmt: skip
    assert EVIL in {r["key"]["team"] for r in doc["rows"]}


# -- plain decimals -------------------------------------------------------------------------


def test_numbers_are_plain_by_hand() -> None:
    assert plain(1.2345678901234567e19) == "12345678901234567000.0"
    assert plain(5.862e-07) == "0.0000005862"
    assert plain(D("0E-12")) == "0.000000000000"
    assert plain(D("5.86200E-7")) == "0.000000586200"
    assert plain(3) == "3" and plain(-1.5) == "-1.5"
    doc = {"tiny": 5.862e-07, "huge": 1.2345678901234567e19, "zero": D("0E-12"), "n": [1, None]}
    text = json_text(doc)
    assert not re.search(r"\d[eE][+-]?\d", text)
    assert json.loads(text) == {"tiny": 5.862e-07, "huge": 1.2345678901234567e19, "zero": 0.0,
                                "n": [1, None]}  # fmt: skip


@pytest.mark.parametrize(
    ("price", "total"),
    [
        # 390.88 s held at 1e17 per GPU-hour: 390.88 / 3600 * 1e17 = 1.0857777...e16
        ("100000000000000000", D("10857777777777777.78")),
        # at 0.00001 per GPU-hour: 390.88 / 3600 * 1e-5 = 0.0000010857777...
        ("0.00001", D("0.000001")),
    ],
)
def test_json_and_csv_print_plain_decimals(
    cli: Any, tmp_path: Path, price: str, total: Decimal
) -> None:
    (tmp_path / "c.yaml").write_text(
        f'prices:\n  gpu_models:\n    "NVIDIA H100 80GB HBM3": {price}\n'
    )
    _run(cli, tmp_path, "ingest", "nvidia-smi", str(H100), "--host", "lab")
    exponent = re.compile(r"\d[eE][+-]?\d")
    text = _run(cli, tmp_path, "cost", "--window", WINDOW, "--format", "json")
    assert not exponent.search(text), text
    doc = json.loads(text, parse_float=Decimal)
    # (the number's form is under test here, not the sum: within 1e-4 of it)
    assert abs(doc["total_cost"] - total) <= total * D("1e-4") + D("0.0000005")
    text = _run(cli, tmp_path, "cost", "--window", WINDOW, "--format", "csv")
    assert not exponent.search(text), text
    if total > 1:  # the FOCUS dataset's Decimal(38, 12) holds no such amount
        return
    _run(cli, tmp_path, "export", "focus", "-o", "f.csv", "--window", WINDOW)
    text = (tmp_path / "f.csv").read_text()
    assert not exponent.search(text.split("\n", 1)[1]), text
    with (tmp_path / "f.csv").open(newline="") as fh:
        billed = sum(D(r["BilledCost"]) for r in csv.DictReader(fh))
    assert abs(billed - total) <= total * D("1e-4") + D("0.0000001")


# -- tags in the table, bills summary's help, an empty window -------------------------------


def test_tags_table_shows_each_tags_share(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("{}\n")
    bill = tmp_path / "bill.csv"
    p = "2026-11-01 00:00:00,2026-11-02 00:00:00,2026-11-01 00:00:00"
    head = ("BilledCost,EffectiveCost,ListCost,BillingCurrency,ChargePeriodStart,"
            "ChargePeriodEnd,BillingPeriodStart,BillingAccountId,ProviderName,ServiceName,"
            "ChargeCategory,ResourceId,Tags")  # fmt: skip
    bill.write_text(
        f"{head}\n"
        f'6.00,6.00,6.00,USD,{p},a,AWS,EC2,Usage,i-1,"{{""team"": ""ml"", ""project"": ""x""}}"\n'
        f'3.00,3.00,3.00,USD,{p},a,AWS,EC2,Usage,i-2,"{{""team"": ""ml""}}"\n'
        f"1.00,1.00,1.00,USD,{p},a,AWS,EC2,Usage,i-3,NULL\n"
    )
    _run(cli, tmp_path, "ingest", "focus", str(bill))
    out = _run(cli, tmp_path, "tags", "report", "--tag", "team", "--tag", "project")
    # of 10.00: both tags on 6.00 (60%), team on 9.00 (90%), project on 6.00 (60%)
    assert "USD: 60.0% of 10.00 billed carries all of team, project" in out
    assert "team 90.0%" in out and "project 60.0%" in out


def test_bills_summary_help_names_every_group_by(cli: Any, tmp_path: Path) -> None:
    from aifinops.store.bills import SUMMARY_DIMENSIONS

    out = cli("bills", "summary", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    words = set(re.findall(r"[a-z_]+", out.stdout))
    assert set(SUMMARY_DIMENSIONS) <= words, set(SUMMARY_DIMENSIONS) - words


def test_an_empty_window_says_where_the_data_is(
    make_service: Any, cli: Any, tmp_path: Path
) -> None:
    from aifinops.demo.capture import h100_capture_dir

    # the capture's samples: 2026-11-23 10:3x UTC; a week up to 2027-01-01 holds none
    svc = make_service(clock=lambda: datetime(2027, 1, 1, tzinfo=UTC))
    svc.ingest_nvidia_smi(h100_capture_dir(), host="lab")
    report = svc.cost(last="7d")
    assert report.rows == []
    (note,) = [n for n in report.notes if "no GPU samples" in n]
    assert "2026-11-23T10:" in note
    # the CLI shows it, in the table and in JSON
    (tmp_path / "c.yaml").write_text("{}\n")
    _run(cli, tmp_path, "ingest", "nvidia-smi", str(H100), "--host", "lab")
    empty = "2026-12-01T00:00:00Z,2026-12-08T00:00:00Z"
    out = _run(cli, tmp_path, "cost", "--window", empty)
    assert "no GPU samples in this window" in out and "2026-11-23T10:" in out
    doc = json.loads(_run(cli, tmp_path, "cost", "--window", empty, "--format", "json"))
    assert any("2026-11-23T10:" in n for n in doc["notes"])
    # a window that holds samples has no such note
    assert not any("no GPU samples" in n for n in svc.cost(window=WINDOW).notes)
