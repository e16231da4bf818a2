"""A CUR delivered in several files: parts given one command at a time add up; a whole
re-delivery restates the period; what cannot be told apart deletes nothing (issue 12, 7).
Expected totals are summed from the raw sample with csv + Decimal."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import UsageError
from tests.conftest import dec, shared_data

pytestmark = pytest.mark.engines


CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"
COST = "lineItem/UnblendedCost"


def _rows() -> list[dict[str, str]]:
    with shared_data(CUR).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(rows)
    return path


def _total(rows: list[dict[str, str]]) -> Decimal:
    return sum((dec(r[COST]) for r in rows), Decimal(0))


def _stored(svc: Any) -> tuple[int, Decimal]:
    count, total = svc.store.raw("SELECT count(*), sum(billed_cost) FROM cost_lines")[0]
    return int(count), Decimal(total or 0)


def _parts(tmp_path: Path, rows: list[dict[str, str]], n: int) -> list[Path]:
    size = -(-len(rows) // n)
    folder = tmp_path / "delivery"
    folder.mkdir(exist_ok=True)
    return [_write(folder / f"report-{i + 1}.csv", rows[i * size : (i + 1) * size])
            for i in range(n)]  # fmt: skip


def test_parts_given_one_by_one_add_up(make_service: Any, tmp_path: Path) -> None:
    rows = _rows()
    assert len(rows) == 1281
    svc = make_service()
    results = [svc.ingest_bills("cur", [p])[0] for p in _parts(tmp_path, rows, 3)]
    assert _stored(svc) == (1281, _total(rows))  # before: only the last part was kept
    assert [r.rows for r in results] == [427, 427, 427]
    for r in results[1:]:
        assert any(n.startswith("added to AWS account 123412340534 period 2023-11-01: 427 line")
                   for n in r.notes), r.notes  # fmt: skip
        assert not any(n.startswith("restated") for n in r.notes)


def test_a_whole_redelivery_restates_the_period(make_service: Any, tmp_path: Path) -> None:
    rows = _rows()
    svc = make_service()
    for p in _parts(tmp_path, rows, 3):
        svc.ingest_bills("cur", [p])
    changed = [dict(r) for r in rows]
    changed[0][COST] = str(dec(changed[0][COST]) + Decimal("10.5"))
    (result,) = svc.ingest_bills("cur", [_write(tmp_path / "v2.csv", changed)])
    assert _stored(svc) == (1281, _total(rows) + Decimal("10.5"))
    assert any(n.startswith("restated: AWS account 123412340534 period 2023-11-01") for n in
               result.notes)  # fmt: skip


def test_what_cannot_be_told_apart_deletes_nothing(make_service: Any, tmp_path: Path) -> None:
    rows = _rows()
    first, second, _ = _parts(tmp_path, rows, 3)
    svc = make_service()
    svc.ingest_bills("cur", [first])
    svc.ingest_bills("cur", [second])
    before = _stored(svc)
    assert before == (854, _total(rows[:854]))
    # the second part again, one cost changed: a restated part? half of a new version?
    again = [dict(r) for r in rows[427:854]]
    again[3][COST] = "1.25"
    other = _write(tmp_path / "other.csv", again)
    with pytest.raises(UsageError, match="nothing was changed") as info:
        svc.ingest_bills("cur", [other])
    assert "--replace" in (info.value.hint or "")
    assert _stored(svc) == before
    # told to, it replaces the period with what it was given
    (result,) = svc.ingest_bills("cur", [other], replace=True)
    assert result.status == "loaded"
    assert _stored(svc) == (427, _total(again))


def _manifest(folder: Path, names: list[str]) -> None:
    keys = [f"cur/report/20231101-20231201/abc/{n}" for n in names]
    doc = {
        "assemblyId": "abc-123",
        "reportKeys": keys,
        "billingPeriod": {"start": "20231101T000000.000Z", "end": "20231201T000000.000Z"},
    }
    (folder / "report-Manifest.json").write_text(json.dumps(doc))  # fmt: skip


def test_a_manifest_makes_the_files_given_the_whole_delivery(
    make_service: Any, tmp_path: Path
) -> None:
    rows = _rows()
    svc = make_service()
    for p in _parts(tmp_path, rows, 3):
        svc.ingest_bills("cur", [p])
    # version 2 drops one line and changes another, in two files with their manifest
    v2 = [dict(r) for r in rows[1:]]
    v2[0][COST] = "2.00"
    folder = tmp_path / "v2"
    folder.mkdir()
    files = [_write(folder / "report-1.csv", v2[:640]), _write(folder / "report-2.csv", v2[640:])]
    with pytest.raises(UsageError):  # without the manifest it cannot be told
        svc.ingest_bills("cur", files)
    _manifest(folder, ["report-1.csv.gz", "report-2.csv.gz"])
    with pytest.raises(UsageError):  # a manifest of other files (.gz) says nothing of these
        svc.ingest_bills("cur", files)
    _manifest(folder, ["report-1.csv", "report-2.csv"])
    first, _ = svc.ingest_bills("cur", files)
    assert "manifest report-Manifest.json: delivery abc-123, all 2 file(s) given" in " ".join(
        first.notes
    )
    assert _stored(svc) == (1280, _total(v2))


def test_the_shell_loop_over_gzipped_parts(cli: Any, tmp_path: Path) -> None:
    """`for f in *.csv.gz; do aifinops ingest cur $f; done`, as a user runs it; then a
    part that cannot be told apart is refused (exit 2, nothing deleted) until --replace."""
    import gzip

    rows = _rows()
    parts = _parts(tmp_path, rows, 3)
    zipped = []
    for p in parts:
        gz = p.with_suffix(".csv.gz")
        gz.write_bytes(gzip.compress(p.read_bytes()))
        p.unlink()
        zipped.append(gz)
    for gz in zipped:
        out = cli("--db", "loop.duckdb", "ingest", "cur", str(gz), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    summary = cli("--db", "loop.duckdb", "bills", "summary", "--format", "json", cwd=tmp_path)
    (row,) = json.loads(summary.stdout)["rows"]
    assert Decimal(str(row["billed_cost"])) == _total(rows)
    changed = [dict(r) for r in rows[:427]]
    changed[0][COST] = "9.99"
    odd = _write(tmp_path / "odd.csv", changed)
    refused = cli("--db", "loop.duckdb", "ingest", "cur", str(odd), cwd=tmp_path)
    assert refused.returncode == 2 and "--replace" in refused.stderr
    assert "Traceback" not in refused.stderr
    again = cli("--db", "loop.duckdb", "bills", "summary", "--format", "json", cwd=tmp_path)
    assert json.loads(again.stdout) == json.loads(summary.stdout)  # nothing deleted
    done = cli("--db", "loop.duckdb", "ingest", "cur", str(odd), "--replace", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    last = cli("--db", "loop.duckdb", "bills", "summary", "--format", "json", cwd=tmp_path)
    (row,) = json.loads(last.stdout)["rows"]
    assert Decimal(str(row["billed_cost"])) == _total(changed)
