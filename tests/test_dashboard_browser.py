"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright (the
system browser: nothing is downloaded), against a real `aifinops serve` process on the
demo's store. Every page loads with no console error; its charts draw (a canvas with
pixels, an SVG with bars); the numbers in its tables are its JSON twin's; filters, sorting
and paging change them through the URL; an admin dismisses and applies recommendations a
viewer only sees. Each page's screenshot is written to `artifacts/screenshots/` (or
$AIFINOPS_SCREENSHOTS), which CI keeps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, need_binary

PAGES = ("/", "/costs", "/gpus", "/teams", "/units", "/budgets", "/recommendations",
         "/bills", "/sources")  # fmt: skip
SHOTS = Path(os.environ.get("AIFINOPS_SCREENSHOTS")
             or Path(__file__).resolve().parent.parent / "artifacts" / "screenshots")  # fmt: skip
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`aifinops serve` on the demo's store, with a viewer and an admin token."""
    need_binary("chromium")
    from aifinops.config import load_settings
    from aifinops.demo.run import run_demo
    from aifinops.service import Service

    tmp = tmp_path_factory.mktemp("dash")
    db = tmp / "demo.duckdb"
    made = run_demo(str(db))
    with Service(load_settings(Path(made.config), env={}, flags={"db": str(db)})) as svc:
        tokens = {"viewer": svc.create_token("vera", "viewer"),
                  "admin": svc.create_token("ada", "admin")}  # fmt: skip
    port = free_port()
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aifinops", "--db", str(db), "--config", str(made.config),
         "serve", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (tmp / "serve.log").read_text()
        time.sleep(0.2)
    try:
        yield {"url": url, "tokens": tokens, "log": tmp / "serve.log"}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def browser(demo: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _signed_in(browser: Any, demo: dict[str, Any], role: str) -> Any:
    """A fresh browser context signed in through the login form with `role`'s token."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(demo["url"] + "/teams")
    assert "/login?next=/teams" in page.url  # a token exists: sign in first
    page.get_by_label("Token").fill(demo["tokens"][role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/teams")
    return page


def _watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _table(page: Any, table_id: str) -> list[tuple[str, str]]:
    return page.eval_on_selector_all(
        f"#{table_id} td[data-key]",
        "cells => cells.map(c => [c.dataset.key, c.dataset.value ?? null])",
    )


def _twin_rows(page: Any, base: str, path: str, part: str = "table") -> list[tuple[str, Any]]:
    query = page.url.split("?", 1)[1].split("#")[0] if "?" in page.url else ""
    twin = "/index.json" if path == "/" else path + ".json"
    data = page.request.get(base + twin + (f"?{query}" if query else "")).json()
    table = data[part]
    return [(c["key"], r.get(c["key"])) for r in table["rows"] for c in table["columns"]]


def _same(cells: list[tuple[str, str]], twin: list[tuple[str, Any]]) -> None:
    assert [k for k, _ in cells] == [k for k, _ in twin]
    for (key, shown), (_, value) in zip(cells, twin, strict=True):
        if value is None:
            assert shown is None, key
        elif isinstance(value, int | float) and not isinstance(value, bool):
            assert float(shown) == value, (key, shown, value)
        else:
            assert shown == str(value), (key, shown, value)


CANVAS_INK = """figs => figs.map(f => {
  const c = f.querySelector('canvas');
  if (!c) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) ink++;
  return ink;
})"""
PRIMARY = {"/costs": "cost-table", "/gpus": "gpu-table", "/teams": "team-table",
           "/units": "token-table", "/budgets": "budget-table", "/recommendations": "rec-table",
           "/bills": "bill-table", "/sources": "source-table"}  # fmt: skip


def test_every_page_loads_draws_and_matches_its_twin(browser: Any, demo: dict[str, Any]) -> None:
    page = _signed_in(browser, demo, "viewer")
    errors = _watch(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path in PAGES:
        page.goto(demo["url"] + path)
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() == 1
        charts = page.locator("figure.chart")
        if charts.count():
            page.wait_for_selector("figure.chart[data-rendered]")
            assert page.locator("figure.chart[data-rendered]").count() == charts.count(), path
            ink = page.eval_on_selector_all("figure.chart", CANVAS_INK)
            assert all(n > 500 for n in ink), (path, ink)  # uPlot and the heatmap draw
        if path in ("/teams", "/budgets"):
            widths = page.eval_on_selector_all(
                "figure.bars svg rect", "rs => rs.map(r => r.getBBox().width)"
            )
            assert widths and max(widths) > 10, (path, widths)
        if path in PRIMARY:
            _same(_table(page, PRIMARY[path]), _twin_rows(page, demo["url"], path))
        name = path.strip("/") or "overview"
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert errors == []
    # the demo's figures, as `make demo` prints them (the week up to the newest sample)
    page.goto(demo["url"] + "/costs")
    assert "Total 17,622.21 USD" in page.locator("p.window").inner_text()
    overview = page.request.get(demo["url"] + "/index.json").json()
    page.goto(demo["url"] + "/")
    spend = page.locator("#spend .value").inner_text()
    assert spend == f"{overview['summary']['spend']:,.2f}"
    assert page.locator("#budget-status tbody tr").count() == 2  # the demo's two budgets
    # a viewer is offered no action
    page.goto(demo["url"] + "/recommendations")
    assert page.locator("#rec-table form").count() == 0
    page.context.close()


def test_filters_sorting_and_paging_change_the_numbers(browser: Any, demo: dict[str, Any]) -> None:
    page = _signed_in(browser, demo, "viewer")
    errors = _watch(page)
    base = demo["url"]
    page.goto(base + "/costs")
    by_team = _table(page, "cost-table")
    page.locator("select[name=by]").select_option("model")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**by=model**")
    by_model = _table(page, "cost-table")
    assert by_model != by_team
    _same(by_model, _twin_rows(page, base, "/costs"))
    week_total = page.locator("p.window").inner_text()
    page.locator("input[name=window]").fill("24h")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**window=24h**")
    assert page.locator("p.window").inner_text() != week_total
    _same(_table(page, "cost-table"), _twin_rows(page, base, "/costs"))
    page.wait_for_selector("figure.chart[data-rendered]")
    # sort by GPU-hours: the header says so and the rows follow
    page.get_by_role("link", name="GPU-hours").click()
    page.wait_for_url("**sort=gpu_hours**")
    assert page.locator("th[aria-sort]").inner_text().startswith("GPU-hours")
    hours = [float(v) for k, v in _table(page, "cost-table") if k == "gpu_hours"]
    assert hours == sorted(hours, reverse=True)
    _same(_table(page, "cost-table"), _twin_rows(page, base, "/costs"))
    # the GPU table pages (41 GPUs, 25 a page)
    page.goto(base + "/gpus")
    first = _table(page, "gpu-table")
    page.get_by_role("link", name="Next").click()
    page.wait_for_url("**page=2**")
    second = _table(page, "gpu-table")
    assert len(second) == 16 * 5 and second != first
    _same(second, _twin_rows(page, base, "/gpus"))
    assert errors == []
    page.context.close()


def test_keyboard_labels_and_contrast(browser: Any, demo: dict[str, Any]) -> None:
    page = _signed_in(browser, demo, "viewer")
    page.goto(demo["url"] + "/costs")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter(e => e.type !== 'hidden' && !e.closest('label') && !e.getAttribute('aria-label'))
        .map(e => e.name)""")
    assert unlabelled == []
    # text against the white page: WCAG's contrast of at least 4.5:1
    ratios = page.evaluate("""() => {
      const lum = c => { const [r, g, b] = c.match(/\\d+/g).slice(0, 3).map(v => {
          v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      return ['td', 'th a', 'p.window', '.help', 'figcaption', 'nav a', 'footer']
        .map(s => document.querySelector(s)).filter(Boolean)
        .map(e => (1.05) / (lum(getComputedStyle(e).color) + 0.05));
    }""")
    assert ratios and min(ratios) >= 4.5, ratios
    page.context.close()


def test_an_admin_dismisses_and_applies(browser: Any, demo: dict[str, Any]) -> None:
    page = _signed_in(browser, demo, "admin")
    errors = _watch(page)
    base = demo["url"]
    page.goto(base + "/recommendations")
    before = page.request.get(base + "/recommendations.json").json()
    first, second = (r["id"] for r in before["table"]["rows"][:2])
    row = page.locator("#rec-table tbody tr").first
    row.get_by_label(f"Reason to dismiss {first}").fill("capacity is reserved")
    with page.expect_navigation():
        row.get_by_role("button", name=f"Dismiss {first}").click()
    with page.expect_navigation():
        page.get_by_role("button", name=f"Apply {second}").click()
    after = page.request.get(base + "/recommendations.json").json()
    assert after["count"] == before["count"] - 2
    assert {first, second}.isdisjoint(r["id"] for r in after["table"]["rows"])
    dismissed = page.request.get(base + "/recommendations.json?status=dismissed").json()
    assert [(r["id"], r["reason"]) for r in dismissed["table"]["rows"]] == [
        (first, "capacity is reserved")
    ]
    applied = page.request.get(base + "/recommendations.json?status=applied").json()
    assert [r["id"] for r in applied["table"]["rows"]] == [second]
    page.goto(base + "/recommendations?status=dismissed")
    assert page.locator("#rec-table").get_by_text("capacity is reserved").count() == 1
    assert errors == []
    page.context.close()
