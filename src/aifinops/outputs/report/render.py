"""The report's renderers: HTML and Markdown from Jinja2 templates (`templates/`), PDF from
that HTML through WeasyPrint, CSV as one flat table (section, key, metric, value)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from aifinops.core.money import to_cents
from aifinops.errors import OutputError
from aifinops.outputs.csv_cells import csv_text
from aifinops.outputs.report import renderer
from aifinops.outputs.report.charts import bar_chart, daily_chart

TEMPLATES = Path(__file__).parent / "templates"
CSV_COLUMNS = ("section", "key", "metric", "value")


# -- what the templates show ----------------------------------------------------------------
def money(value: float | None) -> str:
    """An amount to the cent with thousands separators, as `cost` prints its totals."""
    return "–" if value is None else f"{to_cents(Decimal(repr(value))):,.2f}"


def signed(value: float | None) -> str:
    return "–" if value is None else ("+" if value >= 0 else "−") + money(abs(value))


def percent(value: float | None, places: int = 1) -> str:
    """A percentage given in percent (`change_pct`, a budget's `percent`)."""
    return "–" if value is None else f"{value:,.{places}f} %"


def share(value: float | None) -> str:
    """A fraction (efficiency, a contributor's share) as a percentage."""
    return "–" if value is None else f"{value * 100:.1f} %"


def hours(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def key(row_key: dict[str, str]) -> str:
    return " / ".join(str(v) for v in row_key.values()) or "(all)"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md(value: Any) -> str:
    """Text safe in a Markdown table cell: its special characters escaped, one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _environment(autoescape: bool) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, signed=signed, percent=percent, share=share, hours=hours,
                       key=key, md=md)  # fmt: skip
    return env


def charts(data: dict[str, Any]) -> dict[str, bytes]:
    """The report's charts: cost by its dimensions, by model, and spend per day."""
    s, cur = data["summary"], data["summary"]["currency"]
    by = ", ".join(s["by"]) or "nothing"
    out = {
        "by": bar_chart([key(r["key"]) for r in s["rows"]], [r["total_cost"] for r in s["rows"]],
                        f"Cost by {by}", cur),
        "model": bar_chart([key(r["key"]) for r in data["by_model"]["rows"]],
                           [r["total_cost"] for r in data["by_model"]["rows"]],
                           "Cost by model", cur),
    }  # fmt: skip
    if s["daily"]:
        out["daily"] = daily_chart([d["start"] for d in s["daily"]],
                                   [d["total_cost"] for d in s["daily"]], "Spend per day (UTC)",
                                   cur)  # fmt: skip
    return out


def html_text(data: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (charts as data: URIs; no link out)."""
    images = {name: "data:image/png;base64," + base64.b64encode(png).decode("ascii")
              for name, png in charts(data).items()}  # fmt: skip
    return str(_environment(True).get_template("report.html.j2").render(data=data, charts=images))


# -- the formats ----------------------------------------------------------------------------
@renderer("html")
def write_html(data: dict[str, Any], path: Path) -> dict[Path, bytes]:
    return {path: html_text(data).encode("utf-8")}


@renderer("pdf")
def write_pdf(data: dict[str, Any], path: Path) -> dict[Path, bytes]:
    """The HTML report printed by WeasyPrint, with the system's fonts (DejaVu)."""
    return {path: pdf_bytes(html_text(data), where=str(path))}


def pdf_bytes(html: str, where: str = "report") -> bytes:
    """HTML printed to PDF by WeasyPrint with a fetcher of data: URIs only: a font, an
    image or a stylesheet named by any other URL (the network, the disk) stops it, so a
    PDF never fetches anything."""
    import logging

    from weasyprint import HTML
    from weasyprint.urls import FatalURLFetchingError, URLFetcher

    # WeasyPrint reports CSS it ignores through logging; the report's CSS is ours
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    local = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    try:
        pdf = HTML(string=html, url_fetcher=local).write_pdf()
    except FatalURLFetchingError as error:
        raise OutputError(f"the report refers to something outside it: {error}", where=where,
                          hint="a report embeds its images as data: URIs") from None  # fmt: skip
    if not pdf:
        raise OutputError("WeasyPrint wrote no PDF", where=where)
    return bytes(pdf)


@renderer("md")
def write_markdown(data: dict[str, Any], path: Path) -> dict[Path, bytes]:
    """Markdown with each chart a PNG file beside it (`REPORT-by.png`), linked by name."""
    files = {path.with_name(f"{path.stem}-{name}.png"): png for name, png in charts(data).items()}
    names = {p.stem.removeprefix(f"{path.stem}-"): p.name for p in files}
    text = _environment(False).get_template("report.md.j2").render(data=data, charts=names)
    return {path: text.encode("utf-8"), **files}


@renderer("csv")
def write_csv(data: dict[str, Any], path: Path) -> dict[Path, bytes]:
    return {path: csv_text(CSV_COLUMNS, csv_rows(data)).encode("utf-8")}


def csv_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every figure of the report as (section, key, metric, value), amounts as the summary
    gives them (6 places), so a spreadsheet sums them exactly."""

    def row(section: str, k: str, metric: str, value: Any) -> dict[str, Any]:
        return {"section": section, "key": k, "metric": metric, "value": value}

    s = data["summary"]
    for metric in ("start", "end"):
        yield row("window", "", metric, s["window"][metric])
    for metric in ("start", "end"):
        yield row("previous_window", "", metric, s["previous"][metric])
    yield row("summary", "", "currency", s["currency"])
    for metric in ("spend", "previous_spend", "change", "change_pct", "gpu_hours", "idle_cost",
                   "waste_cost", "gpu_efficiency"):  # fmt: skip
        yield row("summary", "", metric, s[metric])
    for section, rows in (("cost_by_" + "_".join(s["by"] or ["all"]), s["rows"]),
                          ("cost_by_model", data["by_model"]["rows"])):  # fmt: skip
        for r in rows:
            for metric in ("total_cost", "gpu_hours", "idle_cost", "waste_cost",
                           "gpu_efficiency"):  # fmt: skip
                yield row(section, key(r["key"]), metric, r[metric])
    for d in s["daily"]:
        yield row("daily", d["start"], "total_cost", d["total_cost"])
    if (f := s["forecast"]) is not None:
        for metric in ("spent", "forecast", "low80", "high80", "low95", "high95", "method"):
            yield row("forecast", f["period"], metric, f[metric])
    for b in s["budgets"]:
        for metric in ("state", "spend", "limit", "percent", "projected"):
            yield row("budget", b["name"], metric, b[metric])
    rec = s["recommendations"]
    yield row("recommendations", "", "count", rec["count"])
    yield row("recommendations", "", "monthly_saving_total", rec["monthly_saving_total"])
    for f in rec["top"]:
        yield row("recommendation", f["id"], "rule", f["rule"])
        yield row("recommendation", f["id"], "monthly_saving", f["monthly_saving"])
    for a in s["anomalies"]:
        k = f"{a['start']} {a['scope']}"
        for metric in ("actual", "expected", "jump", "top_contributor"):
            yield row("anomaly", k, metric, a[metric])
    if (roi := s["roi"]) is not None:
        for metric in ("realised_monthly", "confirmed_by_bill_monthly", "projected_annual",
                       "potential_monthly", "saving_percent", "payback_months"):  # fmt: skip
            yield row("roi", "", metric, roi[metric])
    for u in s["unpriced"]:
        yield row("unpriced", u["node"], "gpu_hours", u["gpu_hours"])
    cb = data["chargeback"]
    for team in cb["teams"]:
        for r in team["rows"]:
            k = f"{cb['month']} {r['team']}/{r['namespace']}/{r['workload']}"
            yield row("chargeback", k, "total_cost", r["total_cost"])
            yield row("chargeback", k, "gpu_hours", r["gpu_hours"])
    yield row("chargeback", cb["month"], "total_cost", cb["total_cost"])
    for note in s["notes"]:
        yield row("note", "", "text", note)
