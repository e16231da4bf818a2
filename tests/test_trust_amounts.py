"""Issue 12, item 6: one absurd amount in a bill is reported by line and skipped; it never
reaches the store, where it would make every later sum overflow."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

from aifinops.service import Service
from aifinops.sources.bills.engine import BillRead, formats, read_bill
from tests.conftest import shared_data

CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"
HUGE = "99999999999999999999999999.5"  # fits DECIMAL(38, 12); a sum with it does not
COST = "lineItem/UnblendedCost"  # the sample has no NetUnblendedCost: this is billed cost


def _cur_with_huge_cost(tmp_path: Path) -> tuple[Path, int, Decimal]:
    """A copy of the real CUR sample whose first line with a cost above 0.15 costs HUGE:
    the copy, that line's number, and the sample's billed total without that line."""
    with shared_data(CUR).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index(COST)
    index = next(i for i, r in enumerate(rows[1:], 1) if r[col] and Decimal(r[col]) > 0.15)
    total = sum((Decimal(r[col]) for r in rows[1:] if r[col]), Decimal(0))
    kept = total - Decimal(rows[index][col])
    rows[index][col] = HUGE
    before = io.StringIO()
    csv.writer(before, lineterminator="\n").writerows(rows[:index])
    path = tmp_path / "cur-huge.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return path, before.getvalue().count("\n") + 1, kept


def test_the_reader_reports_the_line_and_skips_it(tmp_path: Path) -> None:
    path, line, kept = _cur_with_huge_cost(tmp_path)
    # by hand from the raw file: 1.6823086974 in all, less the 0.16641 line replaced
    assert (line, kept) == (925, Decimal("1.51589869740"))
    read = BillRead()
    tables = list(read_bill(path, formats()["cur"], read=read))
    got = sum((v for t in tables for v in t.column("billed_cost").to_pylist()), Decimal(0))
    assert got == kept
    assert read.rows == 1280 and read.skipped == 1
    assert len(read.problems) == 1
    assert read.problems[0].startswith(f"{path}:{line}: an amount out of range ({HUGE}")


def test_the_store_keeps_working_after_the_bad_line(make_service, tmp_path: Path) -> None:
    path, line, kept = _cur_with_huge_cost(tmp_path)
    svc: Service = make_service()
    (result,) = svc.ingest_bills("cur", [path])
    assert any(f":{line}: an amount out of range" in n for n in result.notes), result.notes
    stored = svc.store.raw("SELECT sum(billed_cost), count(*) FROM cost_lines")[0]
    assert stored == (kept, 1280)
    # what broke before: a summary, the tag report, and the good file delivered again
    (summary,) = svc.bills_summary()
    assert Decimal(str(summary["billed_cost"])) == kept
    svc.tags_report()
    svc.ingest_bills("cur", [shared_data(CUR)])
    assert svc.store.raw("SELECT count(*) FROM cost_lines")[0][0] >= 1280
