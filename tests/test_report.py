"""The summary (`Service.summary`) and the report for finance (`aifinops report`), on a
small fleet worked out by hand and on the demo store.

The fleet: node `srv`, two L4 GPUs at $4.00 per GPU-hour, one-hour samples over the two
weeks before T0 (2026-11-23 00:00 UTC, the newest sample's end):
- `ml/base` (team ml, model llama) holds GPU-0 for all 14 days, busy half the time:
  $96 a day, $48 of it waste.
- GPU-1, the week before (9 to 16 November): no samples for 4 days, then free (sampled,
  held by no one) for 3 days: 72 idle GPU-hours, $288.
- GPU-1, the window (16 to 23 November): `web/batch` (team web, model `<b>bert</b>`: a
  label that would be markup), fully busy,
  for 5 days ($480), then free for 2 days (48 GPU-hours, $192 idle).

So, by hand, for the default window (the 7 days up to the newest sample, 16-23 November):
- spend: ml 7 x $96 = $672, web $480, idle $192: $1,344; GPU-hours 168 + 120 + 48 = 336;
  each day $192 (ml $96 plus web's or idle's $96).
- the week before: ml $672 + idle $288 = $960; the change +$384, +40 %.
- waste: ml's half of $672 = $336, web none; efficiency (84 + 120) / (168 + 120) busy
  over held GPU-hours = 0.7083.
- the budget `ml-gpu` ($1,000 a month, team ml) at T0: November so far 14 x $96 = $1,344,
  134.40 % used: exceeded.
- the month-end forecast: November so far is everything, $960 + $1,344 = $2,304.
- the chargeback of November by team, namespace and workload: ml/base 336 GPU-h $1,344.00,
  web/batch 120 GPU-h $480.00, idle 72 + 48 GPU-h $480.00; $2,304.00 in all.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.money import to_cents
from aifinops.service import Service
from tests.conftest import HOUR, T0, load_facts, need_binary, sample

PNG = b"\x89PNG\r\n\x1a\n"
START = T0 - 14 * 24 * HOUR
CONFIG: dict[str, Any] = {
    "prices": {"gpu_models": {"L4": 4.00}},
    "budgets": [{"name": "ml-gpu", "monthlyLimit": 1000, "scope": {"teams": ["ml"]},
                 "alerts": [{"thresholdPercent": 80, "severity": "warning"}]}],
}  # fmt: skip
WINDOW = "2026-11-16T00:00:00Z,2026-11-23T00:00:00Z"
BERT = "<b>bert</b>"  # a label that is markup: shown as text, never as markup


def pod(ns: str, name: str, team: str, model: str) -> dict[str, Any]:
    return {"workload_id": f"{ns}/{name}", "kind": "pod", "namespace": ns, "name": name,
            "node_id": "srv", "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
            "labels": {"team": team, "model": model}, "start_ms": START, "end_ms": None,
            "source": "test"}  # fmt: skip


def fleet(svc: Service) -> None:
    node = {"node_id": "srv", "gpu_model": "NVIDIA L4", "gpu_count": 2, "provider": "aws",
            "resource_id": "i-0srv", "source": "test"}  # fmt: skip
    rows = []
    for t in range(START, T0, HOUR):
        day = (t - START) // (24 * HOUR)  # 0-6 the week before, 7-13 the window
        rows += sample(t, "srv", "GPU-0", [("ml/base", 1.0, 1.0, 0.5)], HOUR)
        if 4 <= day <= 6 or day >= 12:
            rows += sample(t, "srv", "GPU-1", [(None, 1, 1, 0)], HOUR)
        elif day >= 7:
            rows += sample(t, "srv", "GPU-1", [("web/batch", 1.0, 1.0, 1.0)], HOUR)
    load_facts(svc, [node], [pod("ml", "base", "ml", "llama"),
                             pod("web", "batch", "web", BERT)], rows)  # fmt: skip


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The fleet's store, once for the module (each summary reads it for seconds)."""
    import yaml

    from aifinops.config import load_settings

    folder = tmp_path_factory.mktemp("report-fleet")
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    settings = load_settings(folder / "config.yaml", env={},
                             flags={"db": str(folder / "store.duckdb")})  # fmt: skip
    with Service(settings, clock=lambda: datetime(2026, 12, 3, 9, tzinfo=UTC)) as s:
        fleet(s)
        yield s


@pytest.fixture(scope="module")
def summary(svc: Service) -> dict[str, Any]:
    return svc.summary()


@pytest.fixture(scope="module")
def written(svc: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of the fleet's window (named) as HTML, Markdown and CSV, written at once."""
    folder = tmp_path_factory.mktemp("report-files")
    paths = [folder / "report.html", folder / "out" / "report.md", folder / "r.csv"]
    done = svc.report(paths, window=WINDOW)
    return {"folder": folder, **{d["format"]: d for d in done}}


def test_the_summary_of_the_hand_worked_window(summary: dict[str, Any]) -> None:
    s = summary
    assert s["window"] == {"start": "2026-11-16T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    assert s["previous"] == {"start": "2026-11-09T00:00:00Z", "end": "2026-11-16T00:00:00Z"}
    assert s["currency"] == "USD"
    assert (s["spend"], s["previous_spend"], s["change"], s["change_pct"]) == (
        1344.0, 960.0, 384.0, 40.0)  # fmt: skip
    assert (s["gpu_hours"], s["idle_cost"], s["waste_cost"]) == (336.0, 192.0, 336.0)
    assert s["gpu_efficiency"] == 0.7083
    assert s["by"] == ["team"] and s["unpriced"] == []
    assert s["rows"] == [
        {"key": {"team": "ml"}, "total_cost": 672.0, "gpu_hours": 168.0, "idle_cost": 0.0,
         "waste_cost": 336.0, "gpu_efficiency": 0.5},
        {"key": {"team": "web"}, "total_cost": 480.0, "gpu_hours": 120.0, "idle_cost": 0.0,
         "waste_cost": 0.0, "gpu_efficiency": 1.0},
        {"key": {"team": "__idle__"}, "total_cost": 192.0, "gpu_hours": 48.0,
         "idle_cost": 192.0, "waste_cost": 0.0, "gpu_efficiency": None},
    ]  # fmt: skip
    assert s["daily"] == [
        {"start": f"2026-11-{d}T00:00:00Z", "total_cost": 192.0} for d in range(16, 23)
    ]
    f = s["forecast"]
    assert (f["period"], f["spent"]) == ("2026-11", 2304.0)
    assert f["low95"] <= f["low80"] <= f["forecast"] <= f["high80"] <= f["high95"]
    assert f["forecast"] >= f["spent"] and f["method"]
    (b,) = s["budgets"]
    assert (b["name"], b["state"], b["spend"], b["limit"], b["percent"]) == (
        "ml-gpu", "exceeded", 1344.0, 1000.0, 134.4)  # fmt: skip
    assert s["recommendations"] == {"monthly_saving_total": 0.0, "count": 0, "top": []}
    assert s["roi"]["realised_monthly"] == 0.0 and s["roi"]["applied"] == 0
    assert any("no open recommendations" in n for n in s["notes"])
    assert isinstance(s["anomalies"], list)
    json.dumps(s)  # JSON-able as it is


def test_a_window_with_nothing_before_it_has_no_change(svc: Service) -> None:
    s = svc.summary(window="2026-11-09T00:00:00Z,2026-11-16T00:00:00Z")
    assert (s["spend"], s["previous_spend"], s["change"], s["change_pct"]) == (
        960.0, None, None, None)  # fmt: skip
    assert (s["idle_cost"], s["gpu_hours"]) == (288.0, 168.0 + 72.0)
    assert any("no data in the previous window" in n for n in s["notes"])


def test_a_window_before_the_data_has_empty_parts_and_says_why(svc: Service) -> None:
    s = svc.summary(window="2026-10-01T00:00:00Z,2026-10-08T00:00:00Z")
    assert (s["spend"], s["previous_spend"], s["rows"], s["daily"]) == (0.0, None, [], [])
    assert s["forecast"] is None and s["anomalies"] == []
    assert [(b["name"], b["state"], b["spend"]) for b in s["budgets"]] == [("ml-gpu", "ok", 0.0)]
    notes = " | ".join(s["notes"])
    assert "no GPU samples in this window" in notes
    assert "no forecast: 2026-10-08T00:00:00Z is not after the first sample" in notes


def test_the_empty_store_is_a_usage_error(
    make_service: Callable[..., Service], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    from aifinops.errors import UsageError

    with pytest.raises(UsageError, match="no GPU samples"):
        make_service().summary()
    done = cli("report", "-o", "r.html", cwd=tmp_path)
    assert done.returncode == 2 and "no GPU samples" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r.html").exists()


def test_an_unknown_suffix_or_format_is_named(tmp_path: Path, cli: Callable[..., Any]) -> None:
    from aifinops.errors import UsageError
    from aifinops.outputs.report import report_format

    assert report_format(Path("r.txt"), "csv") == "csv"  # --format over the suffix
    assert report_format(Path("R.PDF")) == "pdf"
    done = cli("report", "-o", "r.docx", cwd=tmp_path)
    assert done.returncode == 2 and "'.docx'" in done.stderr and "--format" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(UsageError, match="unknown report format 'xls'"):
        report_format(Path("r.html"), "xls")


class Page(HTMLParser):
    """An HTML page's text and its images' sources."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report(written: dict[str, Any]) -> None:
    html = written["folder"] / "report.html"
    assert written["html"]["bytes"] == html.stat().st_size
    page = Page()
    page.feed(html.read_text(encoding="utf-8"))
    text = " ".join(" ".join(page.text).split())
    assert "Spend in the window: 1,344.00 USD" in text
    assert "+384.00 USD (40.00 %; previous 960.00 USD)" in text
    assert "Total 1,344.00" in text  # the cost by team's and by model's footers
    assert "ml-gpu exceeded 1,344.00 1,000.00 134.40 %" in text
    assert "Chargeback total 2026-11: 2304.00 USD" in text
    assert "ml/base 336.0000 1344.00 0.00 0.00 1344.00" in text
    assert "<b>bert</b> 480.00 120.0 0.00 0.00 100.0 %" in text  # a label, as text
    assert "<b>" not in html.read_text(encoding="utf-8")  # escaped (&lt;b&gt;)
    assert len(page.images) == 3  # spend per day, by team, by model
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)


def test_markdown_report_and_its_charts(written: dict[str, Any]) -> None:
    import matplotlib.image

    out = written["folder"] / "out"
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "**Spend in the window: 1,344.00 USD**" in text
    assert "| \\_\\_idle\\_\\_ | 192.00 | 48.0 | 192.00 | 0.00 | – |" in text
    assert "| **Total** | **1,344.00** |" in text
    assert "| \\<b\\>bert\\</b\\> | 480.00 | 120.0 |" in text  # escaped, not markup
    charts = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(charts) == ["report-by.png", "report-daily.png", "report-model.png"]
    assert sorted(written["md"]["files"]) == sorted(str(out / c) for c in charts)
    for name in charts:
        png = out / name
        assert png.read_bytes().startswith(PNG)
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100


def test_csv_report_exact_values(written: dict[str, Any]) -> None:
    text = (written["folder"] / "r.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    got = {(r["section"], r["key"], r["metric"]): r["value"] for r in rows}
    assert list(rows[0]) == ["section", "key", "metric", "value"]
    expected = {
        ("window", "", "start"): "2026-11-16T00:00:00Z",
        ("summary", "", "spend"): "1344.0", ("summary", "", "previous_spend"): "960.0",
        ("summary", "", "change"): "384.0", ("summary", "", "change_pct"): "40.0",
        ("summary", "", "gpu_hours"): "336.0", ("summary", "", "idle_cost"): "192.0",
        ("summary", "", "waste_cost"): "336.0", ("summary", "", "gpu_efficiency"): "0.7083",
        ("cost_by_team", "ml", "total_cost"): "672.0",
        ("cost_by_team", "web", "gpu_hours"): "120.0",
        ("cost_by_team", "__idle__", "idle_cost"): "192.0",
        ("cost_by_model", "llama", "waste_cost"): "336.0",
        ("cost_by_model", BERT, "total_cost"): "480.0",
        ("daily", "2026-11-22T00:00:00Z", "total_cost"): "192.0",
        ("forecast", "2026-11", "spent"): "2304.0",
        ("budget", "ml-gpu", "state"): "exceeded", ("budget", "ml-gpu", "percent"): "134.4",
        ("recommendations", "", "count"): "0",
        ("chargeback", "2026-11 ml/ml/ml/base", "total_cost"): "1344.00",
        ("chargeback", "2026-11 web/web/web/batch", "gpu_hours"): "120.0000",
        ("chargeback", "2026-11 __idle__/__idle__/__idle__", "total_cost"): "480.00",
        ("chargeback", "2026-11", "total_cost"): "2304.00",
    }  # fmt: skip
    assert {k: got.get(k) for k in expected} == expected


# -- the demo store -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from aifinops.demo.run import run_demo

    return run_demo(str(tmp_path_factory.mktemp("report-demo") / "demo.duckdb"))


def _amount(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def test_demo_pdf_renders_and_its_totals_are_cost(demo: Any, tmp_path: Path,
                                                  cli: Callable[..., Any]) -> None:  # fmt: skip
    """The PDF drawn to PNG (a page with ink on it) and read back by its text layer: the
    window's spend, the cost by team's and by model's totals and the month-end forecast
    are those of `cost --format json` and `forecast --period-end` for the same window."""
    import matplotlib.image

    need_binary("pdftoppm", "pdftotext", "pdffonts")
    span = f"{demo.window.start.isoformat()},{demo.window.end.isoformat()}"
    flags = ("--db", demo.db, "--config", demo.config)
    done = cli(*flags, "report", "-o", "report.pdf", "--output", "report.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pdf = tmp_path / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert f"pdf report, {pdf.stat().st_size:,} bytes -> report.pdf" in done.stderr
    assert "csv report" in done.stderr and done.stdout == ""
    drawn = subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "2", str(pdf),
                            str(tmp_path / "page")], capture_output=True, text=True)  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2
    for page in pages:
        image = matplotlib.image.imread(page)
        assert image.shape[0] > 300 and (image[..., :3] < 0.5).any()  # dark ink on it
        assert (image[..., :3] < 0.99).mean() > 0.01  # not a nearly white page
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
    assert "DejaVu-Sans" in fonts  # the system's fonts, embedded
    read = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True)  # fmt: skip
    assert read.returncode == 0, read.stderr
    text = read.stdout
    cost = json.loads(cli(*flags, "cost", "--window", span, "--format", "json",
                          cwd=tmp_path).stdout)  # fmt: skip
    total = to_cents(Decimal(str(cost["total_cost"])))
    assert total == to_cents(sum((Decimal(str(r["total_cost"])) for r in cost["rows"]),
                                 Decimal(0)))  # fmt: skip
    rows = csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text(encoding="utf-8")))
    got = {(r["section"], r["metric"]): r["value"] for r in rows if r["key"] == ""}
    assert to_cents(Decimal(got[("summary", "spend")])) == total
    assert got[("window", "start")] == cost["window"]["start"]
    spend = re.search(r"Spend in the window: ([\d,]+\.\d\d) USD", text)
    assert spend and _amount(spend.group(1)) == total
    footers = [_amount(m) for m in re.findall(r"^\s*Total\s+([\d,]+\.\d\d)\s*$", text, re.M)]
    assert footers == [total, total]  # by team and by model
    month = demo.forecast["total"]["periods"][0]
    shown = re.search(r"Month-end forecast: ([\d,]+\.\d\d) USD for (\d{4}-\d\d), 80 % "
                      r"interval ([\d,]+\.\d\d) –\s+([\d,]+\.\d\d)", text)  # fmt: skip
    assert shown is not None
    assert (_amount(shown.group(1)), shown.group(2)) == (Decimal(month["forecast"]),
                                                         month["start"][:7])  # fmt: skip
    assert [_amount(shown.group(3)), _amount(shown.group(4))] == [
        Decimal(x) for x in month["interval80"]]  # fmt: skip
    # the appendix is `export chargeback` of the window's month, whose total the demo's
    # week is (its data lie in November)
    appendix = re.search(r"Chargeback total (\d{4}-\d\d): ([\d.]+) USD", text)
    assert appendix and appendix.group(1) == f"{demo.window.end - timedelta(seconds=1):%Y-%m}"
    assert Decimal(appendix.group(2)) == total
    for team in ("research", "product", "search"):
        assert re.search(rf"^{team} \([\d.]+ USD\)$", text, re.M), team


def test_the_pdf_fetches_nothing(served: Any) -> None:
    """Only data: URIs are read while printing: an image on the network or the disk stops
    the PDF, and no request is made."""
    from aifinops.errors import OutputError
    from aifinops.outputs.report.render import pdf_bytes

    served.routes["/logo.png"] = [(200, PNG)]
    for src in (served.url("/logo.png"), "file:///etc/hostname"):
        with pytest.raises(OutputError, match="outside it"):
            pdf_bytes(f'<p>x</p><img src="{src}">')
    assert served.hits.get("/logo.png", 0) == 0
    css = '<link rel="stylesheet" href="data:text/css,p%7Bcolor:red%7D">'
    assert pdf_bytes(f"{css}<p>x</p>").startswith(b"%PDF-")
