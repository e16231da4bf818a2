"""AWS CUR (legacy and 2.0), Azure and OCI bills: the real samples total, to the cent, what the
raw files say (worked out here with csv + Decimal, not through our reader), every Azure
header spelling reads, and bad input is reported and loses nothing."""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from tests.conftest import billed_by as _by
from tests.conftest import dec as _d
from tests.conftest import shared_data

pytestmark = pytest.mark.engines


CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"
AZURE = "billing/focus_converters-tests/azure/sample-anonymous-ea-export-dataset.csv"
OCI = "billing/focus_converters-tests/oci/reports_cost-csv_0000000030000269.csv"
HEADERSETS = "billing/opencost-azure-export/headersets"
VALUES = "billing/opencost-azure-export/values"
CENT = Decimal("0.01")


def _raw(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _close(got: dict[Any, Decimal], want: dict[Any, Decimal], within: str) -> None:
    """Same keys; each equal to the cent and to `within` (files with more than our 12
    decimals)."""
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].quantize(CENT) == want[k].quantize(CENT)
        assert abs(got[k] - want[k]) < Decimal(within)


def test_legacy_cur_unblended_cost_by_product(make_service: Any) -> None:
    path = shared_data(CUR)
    rows = _raw(path)
    want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        name = r["product/ProductName"] or r["lineItem/ProductCode"]
        want[(name, r["lineItem/CurrencyCode"])] += _d(r["lineItem/UnblendedCost"])
    svc = make_service()
    (result,) = svc.ingest_bills("cur", [path])
    assert result.status == "loaded" and result.rows == 1281 and result.notes == []
    assert _by(svc, "service") == dict(want)
    total = sum(want.values())
    assert total.quantize(CENT) == Decimal("1.68")
    assert _by(svc, "provider") == {("AWS", "USD"): total}
    # every line keeps its account, period and category
    got = svc.store.raw(
        "SELECT DISTINCT billing_account_id, sub_account_id, billing_period_start_ms, "
        "billing_period_end_ms FROM cost_lines"
    )
    assert got == [("123412340534", "123412340534", 1698796800000, 1701388800000)]
    cats = dict(svc.store.raw("SELECT charge_category, count(*) FROM cost_lines GROUP BY 1"))
    kinds = defaultdict(int)
    for r in rows:
        kinds[r["lineItem/LineItemType"]] += 1
    assert cats == {"Usage": kinds["Usage"], "Tax": kinds["Tax"]}
    s3 = svc.store.raw(
        "SELECT DISTINCT service_category FROM cost_lines WHERE service_name = 'Amazon Simple "
        "Storage Service'"
    )
    assert s3 == [("Storage",)]


def _cur2(rows: list[dict[str, str]], path: Path) -> Path:
    """The real legacy sample re-written in CUR 2.0's shape: snake_case static columns, tags
    and the non-static product attributes as maps, Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aifinops.sources.bills.cur import cur2_name

    static = [k for k in rows[0] if k != "product/ProductName"]
    cols: dict[str, list[Any]] = {cur2_name(k): [r[k] or None for r in rows] for k in static}
    for i, r in enumerate(rows):
        cols.setdefault("resource_tags", []).append([("user_team", "storage")] if i % 2 else [])
        cols.setdefault("product", []).append(
            [("product_name", r["product/ProductName"])] if r["product/ProductName"] else []
        )
    cost = [float(x) if x else None for x in cols["line_item_unblended_cost"]]
    cols["line_item_unblended_cost"] = cost
    table = pa.table(
        {
            k: pa.array(v, pa.map_(pa.string(), pa.string()))
            if k in ("resource_tags", "product")
            else (pa.array(v, pa.float64()) if k == "line_item_unblended_cost" else pa.array(v))
            for k, v in cols.items()
        }
    )
    pq.write_table(table, path)
    return path


def test_cur_2_parquet(make_service: Any, tmp_path: Path) -> None:
    rows = _raw(shared_data(CUR))
    path = _cur2(rows, tmp_path / "cur2.parquet")
    svc = make_service()
    (result,) = svc.ingest_bills("cur", [path])
    assert result.rows == 1281, result.notes
    want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        name = r["product/ProductName"] or r["lineItem/ProductCode"]
        want[(name, "USD")] += _d(r["lineItem/UnblendedCost"])
    assert _by(svc, "service") == dict(want)
    tagged = svc.store.raw(
        f"SELECT count(*) FROM cost_lines WHERE {svc.store.map_value('tags', 'team')} = 'storage'"
    )
    assert tagged == [(1281 // 2,)]


def test_cur_commitments_and_credits(make_service: Any, commitment_cur: Path) -> None:
    """Savings Plan, reservation and credit lines (conftest's `commitment_cur`): billed vs
    effective (amortised) cost, worked out by hand from the CUR column definitions."""
    path = commitment_cur
    svc = make_service()
    (result,) = svc.ingest_bills("cur", [path])
    assert result.rows == 6 and result.notes == []
    got = {
        r[0]: r[1:]
        for r in svc.store.raw(
            "SELECT resource_id || ':' || charge_category, billed_cost, effective_cost, "
            "pricing_category FROM cost_lines WHERE resource_id IS NOT NULL AND billed_cost >= 0"
        )
    }
    # covered usage: billed 98.32 (negated on its own line), effective the SP rate
    (billed, effective, _) = got["i-1:Usage"]
    assert billed == Decimal("98.32") and effective == Decimal("60.00")
    assert got["i-2:Usage"] == (Decimal(0), Decimal("0.55"), "Committed")
    assert got["i-3:Usage"][2] == "Dynamic"
    summary = _by(svc, "provider")[("AWS", "USD")]
    # billed: 98.32 - 98.32 + 70 + 0 + 0.40 - 5 = 65.40
    assert summary == Decimal("65.40")
    (eff,) = svc.store.raw("SELECT sum(effective_cost) FROM cost_lines")[0]
    # effective: 60 + 0 + (70 - 60) + 0.55 + 0.40 - 5 = 65.95
    assert eff == Decimal("65.95")
    assert svc.store.raw(
        f"SELECT count(*) FROM cost_lines WHERE {svc.store.map_value('tags', 'team')} = 'ml'"
    ) == [(2,)]


def test_azure_ea_cost_in_billing_currency(make_service: Any) -> None:
    path = shared_data(AZURE)
    rows = _raw(path)
    want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        want[(r["MeterCategory"], r["BillingCurrencyCode"])] += _d(r["CostInBillingCurrency"])
    svc = make_service()
    (result,) = svc.ingest_bills("azure", [path])
    assert result.rows == len(rows) == 27 and result.notes == []
    # costs carry up to 14 decimals; ours keep 12: equal to the cent, and to 1e-10
    _close(_by(svc, "service"), want, "1e-10")
    total = sum(want.values())
    ((key, billed),) = _by(svc, "provider").items()
    assert key == ("Microsoft", "CAD") and billed.quantize(CENT) == total.quantize(CENT)
    # 9/2/2023 is 2 September (US order), a one-day charge; the period is September
    first = svc.store.raw(
        "SELECT min(charge_period_start_ms), min(charge_period_end_ms), "
        "min(billing_period_start_ms), max(billing_period_end_ms) FROM cost_lines"
    )[0]
    assert first == (1693612800000, 1693699200000, 1693526400000, 1696118400000)
    # the export's Tags lack braces: read all the same
    tag_a = svc.store.map_value("tags", "tagA")
    assert svc.store.raw(f"SELECT count(*) FROM cost_lines WHERE {tag_a} = 'valueA'")[0][0] > 0


@pytest.mark.parametrize(
    ("name", "cost", "day"),
    [
        ("German.csv", "0.075", "2021-02-02"),
        ("PayAsYouGo.csv", "0.075", "2021-02-02"),
        ("YA.csv", "0.075", "2021-02-02"),
        ("EnterpriseCamel.csv", "0.012", "2021-02-02"),
        ("Enterprise.csv", "0", "2021-02-02"),
    ],
)
def test_azure_header_spellings(make_service: Any, name: str, cost: str, day: str) -> None:
    path = shared_data(f"{HEADERSETS}/{name}")
    svc = make_service()
    (result,) = svc.ingest_bills("azure", [path])
    assert result.rows == 1, result.notes
    ((key, billed),) = _by(svc, "day").items()
    assert key == (day, "USD" if name != "Enterprise.csv" else key[1]) and billed == Decimal(cost)


def test_azure_bom_header_and_an_empty_row(make_service: Any) -> None:
    path = shared_data(f"{HEADERSETS}/BOM.csv")
    svc = make_service()
    (result,) = svc.ingest_bills("azure", [path])
    # the header (behind a byte-order mark) is read; its one row is all empty: reported
    assert result.rows == 0
    assert any("no readable cost" in n and "skipped" in n for n in result.notes)


def test_azure_values_without_a_currency_column(make_service: Any) -> None:
    path = shared_data(f"{VALUES}/Template.csv")
    svc = make_service()
    with pytest.raises(InputError, match="no currency column") as info:
        svc.ingest_bills("azure", [path])
    assert info.value.where == str(path) and "--currency" in (info.value.hint or "")
    rows = _raw(path)
    # OpenCost's real export leaves out trailing empty fields: strict, those lines are
    # skipped as cut short and the note says how to read them; padded, all load
    (strict,) = svc.ingest_bills("azure", [path], options={"currency": "usd"})
    assert strict.rows == 0 and any("--pad-short-rows" in n for n in strict.notes)
    (result,) = svc.ingest_bills(
        "azure", [path], options={"currency": "usd", "pad_short_rows": True}
    )
    # two of its 87 lines are there twice: counted once
    distinct = list({tuple(r.items()): r for r in rows}.values())
    assert len(rows) == 87 and result.rows == len(distinct) == 85
    assert "2 line(s) repeated within the file were counted once" in result.notes
    rows = distinct
    total = sum(_d(r["costinbillingcurrency"]) for r in rows)
    ((key, billed),) = _by(svc, "currency").items()
    assert key == ("USD", "USD") and abs(billed - total) < Decimal("1e-10")
    assert billed.quantize(CENT) == total.quantize(CENT) == Decimal("15.74")
    listed = sum(_d(r["paygcostinbillingcurrency"]) for r in rows)
    (listed_got,) = svc.store.raw("SELECT sum(list_cost) FROM cost_lines")[0]
    assert abs(listed_got - listed) < Decimal("1e-10")
    # a JSON Tags value and one without braces both become maps
    (broken,) = svc.ingest_bills("azure", [shared_data(f"{VALUES}/MissingBrackets.csv")],
                                 options={"currency": "USD", "pad_short_rows": True})  # fmt: skip
    assert broken.rows == 1
    tags = svc.store.raw(
        "SELECT tags['poolName'], tags['resourceNameSuffix'] FROM cost_lines "
        "WHERE source = 'MissingBrackets.csv'"
    )
    assert tags == [(None, "12345678")]


def test_azure_amortized_moves_commitments(make_service: Any, tmp_path: Path) -> None:
    header = ("Date,SubscriptionId,MeterCategory,CostInBillingCurrency,BillingCurrencyCode,"
              "ChargeType,PricingModel,ResourceId")  # fmt: skip
    lines = [
        "11/02/2026,s1,Virtual Machines,12.50,EUR,Usage,Reservation,/x/vm1",
        "11/02/2026,s1,Virtual Machines,4.00,EUR,Usage,OnDemand,/x/vm2",
        "11/02/2026,s1,Virtual Machines,1.50,EUR,UnusedReservation,Reservation,",
    ]
    path = tmp_path / "amortized.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    svc = make_service()
    svc.ingest_bills("azure", [path], options={"dataset": "amortized"})
    billed, effective = svc.store.raw(
        "SELECT sum(billed_cost), sum(effective_cost) FROM cost_lines"
    )[0]
    # only the on-demand line was billed now; all three are the amortised cost
    assert billed == Decimal("4.00") and effective == Decimal("18.00")


def test_oci_my_cost(make_service: Any) -> None:
    path = shared_data(OCI)
    rows = _raw(path)
    want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        want[(r["product/service"], r["cost/currencyCode"])] += _d(r["cost/myCost"])
    svc = make_service()
    (result,) = svc.ingest_bills("oci", [path])
    assert result.rows == 506 and result.notes == []
    got = _by(svc, "service")
    # the file's costs carry up to 18 decimals; ours keep 12: equal to far below a cent
    _close(got, want, "1e-9")
    assert sum(got.values()).quantize(CENT) == sum(want.values()).quantize(CENT)
    # 2023-11-13T10:00Z: minutes without seconds, read as UTC
    assert svc.store.raw("SELECT min(billing_period_start_ms) FROM cost_lines") == [
        (1698796800000,)
    ]
    created = defaultdict(int)
    for r in rows:
        if r["tags/Oracle-Tags.CreatedBy"]:
            created[r["tags/Oracle-Tags.CreatedBy"]] += 1
    tags = svc.store.raw(
        "SELECT tags['Oracle-Tags.CreatedBy'], count(*) FROM cost_lines "
        "WHERE tags['Oracle-Tags.CreatedBy'] IS NOT NULL GROUP BY 1"
    )
    assert dict(tags) == dict(created) and created


def test_gzipped_cur_and_a_foreign_header(make_service: Any, tmp_path: Path) -> None:
    raw = shared_data(CUR).read_bytes()
    gz = tmp_path / "cur-00001.csv.gz"
    gz.write_bytes(gzip.compress(raw))
    svc = make_service()
    (result,) = svc.ingest_bills("cur", [gz])
    assert result.rows == 1281
    with pytest.raises(InputError, match="not an AWS Cost and Usage Report") as info:
        svc.ingest_bills("cur", [shared_data(AZURE)])
    assert "ingest azure" in (info.value.hint or "")
    with pytest.raises(InputError, match="not an OCI cost report") as info:
        svc.ingest_bills("oci", [shared_data(CUR)])
    assert "ingest cur" in (info.value.hint or "")


def test_cur_cut_duplicated_and_restated(make_service: Any, tmp_path: Path) -> None:
    path = shared_data(CUR)
    text = path.read_text()
    lines = text.splitlines()
    rows = _raw(path)
    total = sum(_d(r["lineItem/UnblendedCost"]) for r in rows)
    # a delivery cut mid-row, with one line twice
    cut = tmp_path / "cut.csv"
    cut.write_text("\n".join([*lines[:11], lines[10], lines[11][:40]]) + "\n")
    svc = make_service()
    (result,) = svc.ingest_bills("cur", [cut])
    assert result.rows == 10
    assert any(n.startswith(f"{cut}:13: ") and "cut mid-row" in n for n in result.notes)
    assert "1 line(s) repeated within the file were counted once" in result.notes
    # the full re-delivery of the period replaces it and says so
    (again,) = svc.ingest_bills("cur", [path])
    part = sum(_d(r["lineItem/UnblendedCost"]) for r in rows[:10])
    assert any(
        n.startswith("restated: AWS account 123412340534 period 2023-11-01")
        and f"{part:.2f} -> {total:.2f}" in n
        for n in again.notes
    )
    assert svc.store.count("cost_lines") == 1281
    assert svc.ingest_bills("cur", [path])[0].status == "unchanged"


def test_mixed_currencies_never_summed(make_service: Any, tmp_path: Path) -> None:
    header = "Date,SubscriptionId,CostInBillingCurrency,BillingCurrencyCode,Tags"
    lines = [
        '11/02/2026,s1,10.00,EUR,"{""team"": ""a""}"',
        "11/02/2026,s1,20.00,USD,",
        "11/03/2026,s1,-2.50,EUR,",  # a refund: negative, kept
        "11/03/2026,s1,not-a-number,EUR,",
    ]
    path = tmp_path / "mixed.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    svc = make_service()
    (result,) = svc.ingest_bills("azure", [path])
    assert result.rows == 3
    assert any("no readable cost" in n for n in result.notes)
    assert _by(svc, "provider") == {
        ("Microsoft", "EUR"): Decimal("7.50"),
        ("Microsoft", "USD"): Decimal("20.00"),
    }
    out = svc.bills_summary(by=["provider"])
    assert json.dumps(out, default=str)  # JSON-able
    assert {r["currency"] for r in out} == {"EUR", "USD"}


def test_cur_line_identity(make_service: Any, tmp_path: Path) -> None:
    """A CUR line is its `identity/LineItemId` + `identity/TimeInterval` and what we read:
    the same line again with an unread column changed is a repeat; a copy under another line
    id is a second line."""
    rows = _raw(shared_data(CUR))[:3]
    again = dict(rows[0], **{"bill/InvoiceId": "changed-but-unread"})
    other = dict(rows[1], **{"identity/LineItemId": rows[1]["identity/LineItemId"] + "-b"})
    path = tmp_path / "cur.csv"
    with path.open("w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows([*rows, again, other])
    svc = make_service()
    (result,) = svc.ingest_bills("cur", [path])
    assert result.rows == 4 and svc.store.count("cost_lines") == 4
    assert "1 line(s) repeated within the file were counted once" in result.notes
    want = sum(_d(r["lineItem/UnblendedCost"]) for r in [*rows, other])
    assert sum(_by(svc, "provider").values()) == want


def test_a_line_in_two_files_of_one_delivery(make_service: Any, tmp_path: Path) -> None:
    """Two parts of one CUR delivery that overlap by one line: the line counts once, and the
    second file says so; the rows reported add up to the lines stored."""
    rows = _raw(shared_data(CUR))[:8]
    parts = []
    for name, part in (("part-1.csv", rows[:5]), ("part-2.csv", rows[4:])):
        path = tmp_path / name
        with path.open("w", newline="") as fh:
            out = csv.DictWriter(fh, fieldnames=list(rows[0]))
            out.writeheader()
            out.writerows(part)
        parts.append(path)
    svc = make_service()
    first, second = svc.ingest_bills("cur", parts)
    assert (first.rows, second.rows) == (5, 3) and svc.store.count("cost_lines") == 8
    assert "1 line(s) also in another file of this delivery were counted once" in second.notes
    assert first.notes == []
    assert sum(_by(svc, "provider").values()) == sum(_d(r["lineItem/UnblendedCost"]) for r in rows)
