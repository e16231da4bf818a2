"""The FOCUS chargeback export: one line per workload and step, summing to the allocation's
asset cost; FOCUS names, UTC periods, the x_ columns; CSV and Parquet read back alike."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import UsageError


def test_export_sums_to_the_allocation(capture_service: Any, tmp_path: Path) -> None:
    svc = capture_service
    out = tmp_path / "chargeback.csv"
    done = svc.export_focus(out, step="1h")
    report = svc.cost(step="1h", by=["workload"])
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == done["rows"] == len(report.rows)
    billed = sum(Decimal(r["BilledCost"]) for r in rows)
    # the capture: one H100 at 4.00/GPU-hour for the seconds it was sampled
    seconds = svc.store.raw("SELECT sum(held_req) / 1000 FROM gpu_usage")[0][0]
    assert abs(billed - Decimal(seconds) / 3600 * 4) < Decimal("1e-9")
    assert abs(billed - report.asset_cost) < Decimal("1e-9")
    by_team: dict[str, Decimal] = {}
    for r in rows:
        by_team[r["SubAccountId"]] = by_team.get(r["SubAccountId"], Decimal(0)) + Decimal(
            r["BilledCost"]
        )
        assert r["BillingCurrency"] == "USD" and r["ChargeCategory"] == "Usage"
        assert r["ChargePeriodStart"].endswith(":00:00Z") and r["ChargePeriodEnd"].endswith("Z")
        assert r["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
        assert r["EffectiveCost"] == r["BilledCost"]
        assert json.loads(r["Tags"]).get("team") == (r["x_Team"] or None)
    # each team's lines add up to what `cost --by team` charges it
    teams = svc.cost(by=["team"])
    named = [r for r in teams.rows if not r.key["team"].startswith("__")]
    assert {r.key["team"] for r in named} == {"search", "research", "data-science", "product"}
    for row in named:
        assert abs(by_team[row.key["team"]] - row.total_cost) < Decimal("1e-9")
    gpu = {r["ResourceId"]: Decimal(r["x_GpuHours"]) for r in rows if r["ResourceId"]}
    assert gpu["lab/pretrain-job-0"] > 0


def test_parquet_export_and_bad_names(capture_service: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    svc = capture_service
    svc.export_focus(tmp_path / "c.parquet")
    table = pq.read_table(tmp_path / "c.parquet")
    assert str(table.schema.field("ChargePeriodStart").type) == "timestamp[ms, tz=UTC]"
    assert "x_GpuEfficiency" in table.column_names
    with pytest.raises(UsageError, match=r"\.csv or \.parquet"):
        svc.export_focus(tmp_path / "c.xlsx")


def test_chargeback_csv_for_a_month(capture_service: Any, tmp_path: Path) -> None:
    svc = capture_service
    out = tmp_path / "chargeback-2026-11.csv"
    svc.export_chargeback(out, month="2026-11", by=["team"])
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[-1]["team"] == "TOTAL"
    body = rows[:-1]
    # the capture lies in November: the month's total is its whole cost, 4.00 per GPU-hour
    seconds = svc.store.raw("SELECT sum(held_req) / 1000 FROM gpu_usage")[0][0]
    want = (Decimal(seconds) / 3600 * 4).quantize(Decimal("0.01"))
    assert Decimal(rows[-1]["total_cost"]) == want
    # parts are rounded for display; their sum is within a cent per row of the total
    assert abs(sum(Decimal(r["total_cost"]) for r in body) - want) <= Decimal("0.01") * len(body)
    assert {"search", "research", "data-science", "product"} <= {r["team"] for r in body}
    assert all(r["currency"] == "USD" for r in rows)
    # December has no samples: a zero total, no rows but the total
    empty = svc.export_chargeback(None, month="2026-12")
    assert [r["total_cost"] for r in empty] == ["0.00"]
    with pytest.raises(UsageError, match="not a month"):
        svc.export_chargeback(None, month="2026-13")
