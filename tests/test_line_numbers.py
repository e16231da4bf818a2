"""A line skipped for what it holds is named by file and line (`FILE:LINE: ...; skipped`),
as a cut line is: a bill line with no readable cost or currency (found again by its line
hash after the scan), a Parquet bill's by row; a scrape's skipped samples by their lines."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aifinops.sources.bills.engine import BillRead, formats, read_bill
from aifinops.sources.exposition import parse
from aifinops.sources.serving.inference import read_counters
from aifinops.sources.telemetry.dcgm import read_scrapes
from tests.conftest import shared_data

CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"
COST = "lineItem/UnblendedCost"
CURRENCY = "lineItem/CurrencyCode"


def _line_of(rows: list[list[str]], index: int) -> int:
    """The line (header = line 1) on which row `index` of the written file starts."""
    before = io.StringIO()
    csv.writer(before, lineterminator="\n").writerows(rows[:index])
    return before.getvalue().count("\n") + 1


def _cur_with_two_bad_lines(tmp_path: Path) -> tuple[Path, int, int, Decimal]:
    """The real CUR sample with one line's cost unreadable and another's currency empty:
    the copy, the two lines' numbers, and the billed total without those two lines."""
    with shared_data(CUR).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    cost, currency = rows[0].index(COST), rows[0].index(CURRENCY)
    priced = [i for i, r in enumerate(rows[1:], 1) if r[cost] and Decimal(r[cost]) != 0]
    bad_cost, no_currency = priced[10], priced[-20]
    total = sum((Decimal(r[cost]) for r in rows[1:] if r[cost]), Decimal(0))
    kept = total - Decimal(rows[bad_cost][cost]) - Decimal(rows[no_currency][cost])
    rows[bad_cost][cost] = "not-a-number"
    rows[no_currency][currency] = ""
    path = tmp_path / "cur-bad.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return path, _line_of(rows, bad_cost), _line_of(rows, no_currency), kept


def test_cur_lines_without_cost_or_currency_are_named(tmp_path: Path) -> None:
    path, cost_line, currency_line, kept = _cur_with_two_bad_lines(tmp_path)
    read = BillRead()
    tables = list(read_bill(path, formats()["cur"], read=read))
    got = sum((v for t in tables for v in t.column("billed_cost").to_pylist()), Decimal(0))
    assert got == kept
    assert read.skipped == 2
    assert len(read.problems) == 2, read.problems
    assert read.problems[0].startswith(f"{path}:{cost_line}: no readable cost")
    assert read.problems[1].startswith(f"{path}:{currency_line}: no readable currency")
    assert all(p.endswith("; skipped") for p in read.problems)


def test_the_stored_total_leaves_out_the_named_lines(make_service: Any, tmp_path: Path) -> None:
    path, cost_line, currency_line, kept = _cur_with_two_bad_lines(tmp_path)
    svc = make_service()
    (result,) = svc.ingest_bills("cur", [path])
    assert any(n.startswith(f"{path}:{cost_line}: no readable cost") for n in result.notes)
    assert any(n.startswith(f"{path}:{currency_line}: no readable currency") for n in result.notes)
    ((total,),) = svc.store.raw("SELECT sum(billed_cost) FROM cost_lines")
    assert Decimal(total) == kept


AZURE_HEADER = "Date,SubscriptionId,CostInBillingCurrency,BillingCurrencyCode,Tags"
AZURE_LINES = [
    '11/02/2026,s1,10.00,EUR,"{""team"": ""a""}"',
    "11/02/2026,s1,20.00,USD,",
    "11/03/2026,s1,-2.50,EUR,",
    "11/03/2026,s1,not-a-number,EUR,",
]


def test_azure_bad_cost_is_named_by_line(make_service: Any, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(AZURE_HEADER + "\n" + "\n".join(AZURE_LINES) + "\n")
    svc = make_service()
    (result,) = svc.ingest_bills("azure", [path])
    assert result.rows == 3
    assert f"{path}:5: no readable cost; skipped" in result.notes, result.notes


def test_a_parquet_bill_names_the_row(tmp_path: Path) -> None:
    rows = list(csv.reader(AZURE_LINES))
    names = AZURE_HEADER.split(",")
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)}), path)
    read = BillRead()
    list(read_bill(path, formats()["azure"], read=read))
    assert read.rows == 3 and read.skipped == 1
    assert read.problems == [f"{path}: row 4: no readable cost; skipped"]


def test_scrape_readers_name_the_skipped_lines() -> None:
    expo = parse("a 1\nb{x=1} 2\nc not-a-number\n", "s.prom")
    assert expo.problems == [
        "s.prom:2: malformed labels: b{x=1} 2; skipped",
        "s.prom:3: value 'not-a-number' is not a number; skipped",
    ]
    text = "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_FB_USED 5\nDCGM_FI_DEV_GPU_UTIL NaN\n"
    (scrape,) = read_scrapes(text, "d.prom", 0)
    assert any("NaN or infinite" in p and p.endswith("(line 3)") for p in scrape.problems)
    assert any("no Hostname label" in p and p.endswith("(line 2)") for p in scrape.problems)
    counters = read_counters(
        'vllm:prompt_tokens_total{model_name="m"} NaN\n'
        'vllm:generation_tokens_total{model_name="m"} 5\n',
        "v.prom",
    )
    assert "v.prom: skipped 1 sample(s) that were NaN or negative (line 1)" in counters.problems
