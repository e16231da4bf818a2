"""FOCUS datasets: the real 1,000-line sample totals to the cent, idempotence, restated
periods, and bad input (cut rows, a foreign header, mixed currencies, credits, duplicates)."""

from __future__ import annotations

import csv
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from tests.conftest import billed_by as _summary
from tests.conftest import dec as _d
from tests.conftest import shared_data

SAMPLE = "billing/focus-1.0-sample/focus_sample.csv"


def _raw(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))


def test_real_sample_totals_by_provider_and_day(make_service: Any) -> None:
    path = shared_data(SAMPLE)
    svc = make_service()
    (result,) = svc.ingest_focus([path])
    assert result.status == "loaded" and result.rows == 1000 and result.notes == []
    by_provider: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    by_day: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in _raw(path):  # worked out from the raw file, not through our reader
        by_provider[(row["ProviderName"], row["BillingCurrency"])] += _d(row["BilledCost"])
        by_day[(row["ChargePeriodStart"][:10], row["BillingCurrency"])] += _d(row["BilledCost"])
    assert _summary(svc, "provider") == dict(by_provider)
    assert _summary(svc, "day") == dict(by_day)
    # the JSON figures (floats) agree to the cent: 20.52 in all
    shown = sum(r["billed_cost"] for r in svc.bills_summary(by=["provider"]))
    assert f"{sum(by_provider.values()):.2f}" == f"{shown:.2f}" == "20.52"
    again = svc.ingest_focus([path])
    assert again[0].status == "unchanged" and svc.store.count("cost_lines") == 1000


def test_a_restated_period_replaces_the_old(make_service: Any, tmp_path: Path) -> None:
    path = shared_data(SAMPLE)
    rows = _raw(path)
    svc = make_service()
    svc.ingest_focus([path])
    # the provider re-delivers the AWS lines with one charge corrected
    aws = [dict(r) for r in rows if r["ProviderName"] == "AWS"]
    aws[0]["BilledCost"] = str(_d(aws[0]["BilledCost"]) + Decimal("5"))
    restated = tmp_path / "aws-restated.csv"
    with restated.open("w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(aws)
    (result,) = svc.ingest_focus([restated])
    old = sum(_d(r["BilledCost"]) for r in rows if r["ProviderName"] == "AWS")
    assert any(n.startswith("restated: AWS account 1234567890123 period 2024-09-01")
               and f"{old:.2f} -> {old + 5:.2f}" in n for n in result.notes)  # fmt: skip
    totals = _summary(svc, "provider")
    assert totals[("AWS", "USD")] == old + 5
    assert svc.store.count("cost_lines") == 1000  # replaced, not added


def _focus_file(tmp_path: Path, lines: list[str]) -> Path:
    header = (
        "BilledCost,EffectiveCost,ListCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,"
        "BillingPeriodStart,BillingAccountId,ProviderName,ServiceName,ChargeCategory,Tags"
    )
    path = tmp_path / "f.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_bad_and_odd_input(make_service: Any, tmp_path: Path) -> None:
    svc = make_service()
    p = "2024-09-01 00:00:00,2024-09-02 00:00:00,2024-09-01 00:00:00"
    lines = [
        f'10.5,10.5,12,USD,{p},acct,AWS,EC2,Usage,"{{""team"": ""ml""}}"',
        f"8,8,8,EUR,{p},acct-eu,AWS,EC2,Usage,NULL",
        f"-3.25,-3.25,0,USD,{p},acct,AWS,EC2,Credit,NULL",  # a credit: negative, kept
        f'10.5,10.5,12,USD,{p},acct,AWS,EC2,Usage,"{{""team"": ""ml""}}"',  # a duplicate
        "7,7,7,USD,2024-09-01 00:00",  # cut mid-row
    ]
    path = _focus_file(tmp_path, lines)
    (result,) = svc.ingest_focus([path])
    assert result.rows == 3
    assert f"{path}:6: 5 fields where the header has 12 (cut mid-row?); skipped" in result.notes
    assert "1 line(s) repeated within the file were counted once" in result.notes
    totals = _summary(svc, "provider")
    # USD and EUR kept apart, never summed; the credit is part of the USD total
    assert totals == {("AWS", "USD"): Decimal("7.25"), ("AWS", "EUR"): Decimal("8")}
    tags = svc.store.raw("SELECT tags['team'] FROM cost_lines WHERE billed_cost = 10.5")
    assert tags == [("ml",)]
    cur = tmp_path / "cur.csv"
    cur.write_text("identity/LineItemId,lineItem/UnblendedCost,lineItem/UsageStartDate\nx,1,2024\n")
    with pytest.raises(InputError, match="not a FOCUS dataset") as info:
        svc.ingest_focus([cur])
    assert info.value.where == str(cur) and "ingest cur" in (info.value.hint or "")


def test_tag_compliance_on_the_sample(make_service: Any) -> None:
    path = shared_data(SAMPLE)
    svc = make_service()
    svc.ingest_focus([path])
    rows = _raw(path)
    import json

    def tags(r: dict[str, str]) -> dict[str, str]:
        return {} if r["Tags"] == "NULL" else json.loads(r["Tags"])

    total = sum(_d(r["BilledCost"]) for r in rows)
    # worked out from the raw file: lines whose Tags name both application and environment
    want = ["application", "environment"]
    tagged = sum(_d(r["BilledCost"]) for r in rows if all(tags(r).get(t) for t in want))
    env = sum(_d(r["BilledCost"]) for r in rows if tags(r).get("environment"))
    report = svc.tags_report(required=want)
    (usd,) = report["currencies"]
    assert usd["tagged_share"] == pytest.approx(float(tagged / total))
    assert usd["by_tag"]["environment"] == pytest.approx(float(env / total))
    untagged: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        if r["ResourceId"] != "NULL" and not all(tags(r).get(t) for t in want):
            untagged[r["ResourceId"]] += _d(r["BilledCost"])
    top = sorted(untagged.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(u["resource_id"], round(u["billed_cost"], 9)) for u in report["largest_untagged"]] == [
        (rid, round(float(cost), 9)) for rid, cost in top
    ]
    # the default required tags (team, project, ...) appear nowhere in this sample
    assert svc.tags_report()["currencies"][0]["tagged_share"] == 0.0
