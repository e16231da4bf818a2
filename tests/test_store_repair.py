"""A store an older version let a huge amount into can be repaired from the CLI (issue 12,
item 6): `aifinops store repair` removes the line no sum can hold and rebuilds a presence
roll-up out of step; the totals afterwards are the raw file's."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import H100, dec, shared_data

CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"


def test_store_repair_from_the_cli(make_service: Any, cli: Any, tmp_path: Path) -> None:
    with shared_data(CUR).open(newline="") as fh:
        raw = sum((dec(r["lineItem/UnblendedCost"]) for r in csv.DictReader(fh)), Decimal(0))
    svc = make_service(name="r.duckdb")
    svc.ingest_bills("cur", [shared_data(CUR)])
    svc.ingest_nvidia_smi(H100, host="lab")
    # what an older version stored: a copy of a line with a cost no sum can hold ...
    svc.store.raw(
        "INSERT INTO cost_lines SELECT * REPLACE (CAST('99999999999999999999999999.5' AS "
        "DECIMAL(38, 12)) AS billed_cost, 'old' AS line_hash) FROM cost_lines LIMIT 1"
    )
    # ... and a presence roll-up that lost an instant
    (instants,) = svc.store.raw("SELECT count(*) FROM node_presence")[0]
    svc.store.raw("DELETE FROM node_presence WHERE ts_ms = (SELECT min(ts_ms) FROM node_presence)")
    with pytest.raises(Exception, match=r"(?i)out of range|overflow"):
        svc.bills_summary(by=["provider"])  # the defect: every sum now fails
    svc.close()
    db = str(tmp_path / "r.duckdb")
    looked = cli("--db", db, "store", "repair", "--dry-run", cwd=tmp_path)
    assert looked.returncode == 0, looked.stderr
    assert "or more: 1 found" in looked.stdout and "out of step with the samples: 1 found" in (
        looked.stdout
    )
    fixed = cli("--db", db, "store", "repair", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 found, 1 fixed" in fixed.stdout
    summary = cli("--db", db, "bills", "summary", "--format", "json", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    (row,) = json.loads(summary.stdout)["rows"]
    assert Decimal(str(row["billed_cost"])) == raw
    again = make_service(name="r.duckdb")
    assert again.store.raw("SELECT count(*) FROM node_presence")[0][0] == instants
    again.close()
    clean = cli("--db", db, "store", "repair", cwd=tmp_path)
    assert "0 found" in clean.stdout and "1 found" not in clean.stdout
