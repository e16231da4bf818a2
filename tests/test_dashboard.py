"""The dashboard over HTTP on a fleet worked out by hand (the browser tests are in
test_dashboard_browser.py): pages and their JSON twins, filters, sorting and paging in the
URL, sign-in by cookie, and what viewers and admins may do.

The fleet (tests/test_api.py): one L4 node, two GPUs at 4.00 an hour, one hour. GPU-0 is
held by team search all hour at 50 % busy: 4.00, 1 GPU-hour, efficiency 0.5, waste 2.00
(half its GPU time unused). GPU-1 is held by team ads for 30 minutes at 25 % busy: 2.00,
0.5 GPU-hours, efficiency 0.25, waste 1.50; its other 30 minutes are idle: 2.00. Over the
hour GPU-1 was busy 0.25 x 30 / 60 = 12.5 % of its sampled time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from aifinops.api.dashboard import csrf_token
from tests.conftest import HOUR, T0, window
from tests.test_api import PRICES, fleet, serve  # noqa: F401  (serve is a fixture)

WINDOW = window(1)


def _cells(html: str, key: str) -> list[str]:
    return re.findall(rf'data-key="{key}" data-value="([^"]+)"', html)


def _fleet_app(serve: Any, make_service: Any, tmp_path: Path) -> Any:  # noqa: F811
    svc = make_service(PRICES, name="fleet.duckdb")
    fleet(svc)
    svc.close()
    return serve(tmp_path / "fleet.duckdb", PRICES)


def test_costs_page_and_twin_hand_worked(serve: Any, make_service: Any, tmp_path: Path) -> None:  # noqa: F811
    api = _fleet_app(serve, make_service, tmp_path)
    twin = api.get("/costs.json", window=WINDOW).json()
    rows = [(r["key"], r["total_cost"], r["share"], r["gpu_hours"], r["waste_cost"])
            for r in twin["table"]["rows"]]  # fmt: skip
    assert rows == [("search", 4.0, 0.5, 1.0, 2.0), ("ads", 2.0, 0.25, 0.5, 1.5),
                    ("__idle__", 2.0, 0.25, 0.5, 0.0)]  # fmt: skip
    assert twin["total_cost"] == 8.0 and twin["step"] == "1h" and twin["by"] == "team"
    # one step of an hour: each key's one point is its cost
    chart = twin["chart"]
    assert chart["x"] == [T0 // 1000]
    assert {s["label"]: s["values"] for s in chart["series"]} == {
        "search": [4.0],
        "ads": [2.0],
        "__idle__": [2.0],
    }
    html = api.get("/costs", window=WINDOW)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert _cells(html.text, "total_cost") == ["4.0", "2.0", "2.0"]
    assert _cells(html.text, "key") == ["search", "ads", "__idle__"]
    assert "Total 8.00 USD" in html.text


def test_sort_and_page_in_the_url(serve: Any, make_service: Any, tmp_path: Path) -> None:  # noqa: F811
    api = _fleet_app(serve, make_service, tmp_path)
    asc = api.get("/costs.json", window=WINDOW, sort="key", order="asc").json()["table"]
    assert [r["key"] for r in asc["rows"]] == ["__idle__", "ads", "search"]
    assert (asc["sort"], asc["order"]) == ("key", "asc")
    second = api.get("/costs.json", window=WINDOW, size=1, page=2).json()["table"]
    assert [r["key"] for r in second["rows"]] == ["ads"]
    assert (second["total"], second["page"], second["pages"]) == (3, 2, 3)
    html = api.get("/costs", window=WINDOW, size=1, page=2).text
    assert _cells(html, "key") == ["ads"] and "page 2 of 3" in html
    assert 'rel="prev"' in html and 'rel="next"' in html
    # a page past the end shows the last one
    assert api.get("/costs.json", window=WINDOW, size=1, page=9).json()["table"]["page"] == 3


def test_teams_gpus_and_overview_hand_worked(serve: Any, make_service: Any, tmp_path: Path) -> None:  # noqa: F811
    api = _fleet_app(serve, make_service, tmp_path)
    teams = api.get("/teams.json", window=WINDOW).json()
    got = {r["team"]: (r["total_cost"], r["gpu_efficiency"], r["waste_cost"], r["gpu_hours"])
           for r in teams["table"]["rows"]}  # fmt: skip
    assert got == {
        "search": (4.0, 0.5, 2.0, 1.0),
        "ads": (2.0, 0.25, 1.5, 0.5),
        "__idle__": (2.0, None, 0.0, 0.5),
    }
    assert [r["idle_cost"] for r in teams["table"]["rows"]] == [0.0, 0.0, 2.0]
    assert (teams["waste_cost"], teams["idle_cost"], teams["total_cost"]) == (3.5, 2.0, 8.0)
    # largest waste and idle first (a tie in the report's order)
    assert [(b["label"], b["waste"], b["idle"]) for b in teams["bars"]] == [
        ("search", 2.0, 0.0),
        ("__idle__", 0.0, 2.0),
        ("ads", 1.5, 0.0),
    ]
    html = api.get("/teams", window=WINDOW).text
    assert "<svg" in html and _cells(html, "waste_cost") == ["2.0", "1.5", "0.0"]

    gpus = api.get("/gpus.json", window=WINDOW).json()
    assert gpus["chart"]["cells"] == [[0.5], [0.125]]
    assert [(r["gpu"], r["utilization"], r["sampled_hours"]) for r in gpus["table"]["rows"]] \
        == [("GPU-0", 0.5, 1.0), ("GPU-1", 0.125, 1.0)]  # fmt: skip

    # the overview's window by default is the month of the newest data (as of the end of
    # its hour: T0 + 1 h), here its first hour
    index = api.get("/index.json").json()
    assert index["as_of"] == "2026-11-23T01:00:00Z" and index["window_text"] == "month"
    summary = index["summary"]
    assert (summary["spend"], summary["idle_cost"], summary["waste_cost"]) == (8.0, 2.0, 3.5)
    page = api.get("/").text
    assert 'id="spend"' in page and "8.00" in page


def test_every_page_answers(serve: Any, make_service: Any, tmp_path: Path) -> None:  # noqa: F811
    api = _fleet_app(serve, make_service, tmp_path)
    for path in (
        "/",
        "/costs",
        "/gpus",
        "/teams",
        "/units",
        "/budgets",
        "/recommendations",
        "/bills",
        "/sources",
    ):
        html = api.get(path)
        assert html.status_code == 200, (path, html.text[:500])
        assert '<main id="main">' in html.text and 'aria-current="page"' in html.text
        twin = api.get("/index.json" if path == "/" else path + ".json")
        assert twin.status_code == 200 and twin.json()["page"] == (path.strip("/") or "index")
    assert api.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert "Nothing to show" in api.get("/budgets").text  # no budget declared


def test_bad_filters_say_what_and_where(serve: Any, make_service: Any, tmp_path: Path) -> None:  # noqa: F811
    api = _fleet_app(serve, make_service, tmp_path)
    page = api.get("/costs", by="colour")
    assert page.status_code == 400 and "by: cannot show cost by &#39;colour&#39;" in page.text
    assert "team, project, model" in page.text
    twin = api.get("/costs.json", by="colour")
    assert twin.status_code == 400 and twin.json()["error"]["where"] == "by"
    assert api.get("/costs.json", size="0").status_code == 400
    assert "cannot read" in api.get("/costs", window="yesterday-ish").text
    empty = api.get("/costs.json", window=window(1, T0 + 5 * HOUR)).json()
    assert empty["total_cost"] == 0.0 and empty["table"]["rows"] == []


def test_sign_in_viewers_see_admins_act(serve: Any, make_service: Any, tmp_path: Path) -> None:  # noqa: F811
    svc = make_service(PRICES, name="fleet.duckdb")
    fleet(svc)
    viewer, admin = svc.create_token("vera", "viewer"), svc.create_token("ada", "admin")
    svc.close()
    api = serve(tmp_path / "fleet.duckdb", PRICES)
    with httpx.Client(base_url=api.url, follow_redirects=False, timeout=30) as anon:
        gone = anon.get("/teams?window=x")
        assert gone.status_code == 303
        assert gone.headers["location"] == "/login?next=/teams%3Fwindow%3Dx"
        assert anon.get("/teams.json").status_code == 401  # the twin answers as the API does
        bad = anon.post("/login", data={"token": "nope", "next": "/teams"})
        assert bad.status_code == 401 and "not valid" in bad.text
        # a sign-in never sends anyone to another site
        away = anon.post("/login", data={"token": viewer, "next": "//evil.example/"})
        assert away.status_code == 303 and away.headers["location"] == "/"
    with httpx.Client(base_url=api.url, follow_redirects=False, timeout=30) as browser:
        done = browser.post("/login", data={"token": viewer, "next": "/recommendations"})
        assert done.status_code == 303 and done.headers["location"] == "/recommendations"
        assert "httponly" in done.headers["set-cookie"].lower()
        assert "samesite=strict" in done.headers["set-cookie"].lower()
        page = browser.get("/recommendations")
        assert page.status_code == 200 and "vera (viewer)" in page.text
        assert "Sign in with an admin token" in page.text
        acted = browser.post("/recommendations/x/dismiss",
                             data={"csrf": csrf_token(viewer), "reason": "no"})  # fmt: skip
        assert acted.status_code == 403 and "acting needs admin" in acted.text
    with httpx.Client(base_url=api.url, follow_redirects=False, timeout=30) as browser:
        browser.post("/login", data={"token": admin})
        forged = browser.post("/recommendations/x/apply", data={"csrf": "0" * 32})
        assert forged.status_code == 403 and "not from this dashboard" in forged.text
        missing = browser.post("/recommendations/nope-1/apply", data={"csrf": csrf_token(admin)})
        assert missing.status_code == 404 and "nope-1" in missing.text
        no_reason = browser.post("/recommendations/nope-1/dismiss",
                                 data={"csrf": csrf_token(admin)})  # fmt: skip
        assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
        out = browser.post("/logout")
        assert out.status_code == 303
        assert browser.get("/teams").status_code == 303  # signed out
