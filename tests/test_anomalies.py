"""Anomalies (issue 16) on a real trace: the Alibaba v2023 pods of days 116-149 as a fleet
(tests/anomaly_trace.py). Injected anomalies (a one-day spike on one workload, a level
shift, a new workload, a price change on one node) are each found, with the right top
contributor and a drill-down that sums exactly; the un-injected trace's false alarms are
counted; the CLI, the API and the alert (once, to a real SMTP server) are checked.

Expected values are worked from the raw CSV (`anomaly_trace.daily_gpu_hours`) and the
injections, and the expected set of anomalous days by a second, plain implementation of
the rule in the issue (`detect`), never from what the code under test returned."""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.anomaly import Amounts, Cell, Contributor, Series, Thresholds, find_anomalies
from aifinops.service import Service
from tests import anomaly_trace as tr
from tests import test_api
from tests.conftest import free_port

serve = test_api.serve
DAY_MS = 86_400_000
CENT = Decimal("0.01")
Extra = list[tuple[str, str, int, int, float]]


@pytest.fixture(scope="module")
def pods() -> list[dict[str, Any]]:
    return tr.pods()


def spend_cells(
    ps: list[dict[str, Any]], extra: Extra = ()
) -> dict[tuple[int, str, str, str], Decimal]:  # type: ignore[assignment]
    """Dollars per (day, team, workload, node) from the raw CSV and the injections; the
    unheld part of each device to the `__idle__` team on its node."""
    out: dict[tuple[int, str, str, str], Decimal] = defaultdict(Decimal)
    for (day, team, w, node), hours in tr.daily_gpu_hours(ps).items():
        out[(day, team, w, node)] += hours * tr.RATE
    for p in ps:
        if p["share"] < 1:
            for day, _, secs in tr.pieces(p):
                idle = Decimal(p["gpus"]) * (1 - Decimal(str(p["share"]))) * Decimal(secs) / 3600
                out[(day, "__idle__", "__idle__", p["node"])] += idle * tr.RATE
    for w, node, day, gpus, share in extra:
        out[(day, w.split("/")[0], w, node)] += Decimal(gpus) * Decimal(str(share)) * 24 * tr.RATE
    return dict(out)


def by_team(cells: dict[tuple[int, str, str, str], Decimal]) -> dict[str, list[Decimal]]:
    out: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * (tr.D1 - tr.D0))
    for (day, team, _, _), v in cells.items():
        out[team][day - tr.D0] += v
    return dict(out)


def detect(
    series: list[Decimal], k: float = 4.0, least: float = 50.0, rel: float = 0.2
) -> list[int]:
    """The issue's rule, written again: reference = mean of the same weekday of the 4 weeks
    before (28 days of history), else of the 7 days before; band = k x 1.4826 x MAD of the
    residuals of the 28 days before (at least 7 of them)."""
    x = [float(v) for v in series]
    residuals: list[float] = []
    found = []
    for t in range(len(x)):
        if t >= 28:
            ref = [x[t - 7 * i] for i in range(1, 5)]
        elif t >= 7:
            ref = x[t - 7 : t]
        else:
            continue
        expected = sum(ref) / len(ref)
        r = x[t] - expected
        past = [v for (s, v) in residuals if s >= t - 28]
        residuals.append((t, r))  # type: ignore[arg-type]
        if len(past) < 7:
            continue
        med = statistics.median(past)
        scale = 1.4826 * statistics.median(abs(v - med) for v in past)
        if abs(r) > k * scale and abs(r) >= least and (expected == 0 or abs(r) / expected >= rel):
            found.append(t)
    return found


def expected_days(cells: dict[tuple[int, str, str, str], Decimal]) -> set[tuple[str, int]]:
    return {(team, tr.D0 + t) for team, s in by_team(cells).items() for t in detect(s)}


def sums_exactly(parts: tuple[Contributor, ...], whole: Decimal) -> None:
    """Each level's parts sum to their parent's part, and their shares to 1."""
    assert sum((c.delta for c in parts), Decimal(0)) == whole
    if whole:
        assert sum((c.share or Decimal(0) for c in parts), Decimal(0)) == 1
    for c in parts:
        if c.children:
            sums_exactly(c.children, c.delta)


def whole_window(ps: list[dict[str, Any]], team: str) -> str:
    """The first pod (by name) of `team` alive over all the loaded days."""
    alive = [p for p in ps if p["team"] == team and p["start"] <= tr.D0 * tr.DAY_S
             and p["end"] >= tr.D1 * tr.DAY_S]  # fmt: skip
    return str(sorted(alive, key=lambda p: p["name"])[0]["workload"])


def loaded(make_service: Callable[..., Service], ps: list[dict[str, Any]], extra: Extra,
           name: str, config: dict[str, Any] | None = None) -> Service:  # fmt: skip
    svc = make_service({**tr.PRICES, **(config or {})}, name=name)
    tr.load(svc, ps, extra)
    return svc


# -- the un-injected trace -------------------------------------------------------------------


def test_the_trace_alone_false_alarms_counted(
    make_service: Callable[..., Service], pods: list[dict[str, Any]]
) -> None:
    svc = loaded(make_service, pods, [], "plain.duckdb")
    report = svc.anomalies(window=tr.window(), by="team")
    found = {(a.scope, a.start_ms // DAY_MS) for a in report.anomalies}
    assert found == expected_days(spend_cells(pods))
    # Four, none from the weekly cycle: `ls` (the big team, whose days swing by weekday)
    # and `be` raise none. Burstable's GPU-hours jump from about 64 to 302 and 491 a day
    # on days 138-139 (new pods: a real change in the trace), and guaranteed's flat 48
    # GPU-hours a day fall to 24 on days 147-148 (a pod ended).
    assert len(found) == 4
    assert {t for t, _ in found} == {"burstable", "guaranteed"}
    for a in report.anomalies:
        sums_exactly(a.contributors, a.delta)
        assert a.contributors[0].tags in (("new",), ("ended",), ())


# -- injections --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["spike", "level shift", "new workload"])
def test_injected_anomaly_found_and_explained(
    case: str, make_service: Callable[..., Service], pods: list[dict[str, Any]]
) -> None:
    if case == "spike":  # one workload holds 24 more GPUs for one day
        team, culprit, day = "ls", whole_window(pods, "ls"), 140
        extra: Extra = [(culprit, "node-00", day, 24, 1.0)]
    elif case == "level shift":  # one workload holds 16 more GPUs from day 136 on
        team, culprit, day = "ls", whole_window(pods, "ls"), 136
        extra = [(culprit, "node-01", d, 16, 1.0) for d in range(day, tr.D1)]
    else:  # a new workload of 8 GPUs from day 134 on
        team, culprit, day = "be", "be/new-batch", 134
        extra = [(culprit, "node-03", d, 8, 1.0) for d in range(day, tr.D1)]
    cells = spend_cells(pods, extra)
    assert (team, day) in expected_days(cells)  # the rule, worked from the raw CSV, finds it
    svc = loaded(make_service, pods, extra, f"{case.replace(' ', '-')}.duckdb")
    report = svc.anomalies(window=tr.window(), by="team")
    found = {(a.scope, a.start_ms // DAY_MS) for a in report.anomalies}
    assert found == expected_days(cells)
    [a] = [a for a in report.anomalies if (a.scope, a.start_ms // DAY_MS) == (team, day)]
    # the team's day and its reference (the 7 days before: under 28 days of history)
    series = by_team(cells)[team]
    actual = series[day - tr.D0]
    expected = sum(series[day - tr.D0 - 7 : day - tr.D0], Decimal(0)) / 7
    assert a.actual == actual.quantize(CENT)
    assert a.expected == expected.quantize(CENT)
    assert a.delta == (actual - expected).quantize(CENT)
    assert a.direction == "spike" and a.reference == "previous 7 days"
    # the top contributor is the injected workload, its part its own jump
    top = a.contributors[0]
    assert top.name == culprit
    own = [sum((v for (d, t, w, _), v in cells.items() if d == dd and w == culprit), Decimal(0))
           for dd in range(day - 7, day + 1)]  # fmt: skip
    assert abs(top.delta - (own[-1] - sum(own[:-1], Decimal(0)) / 7)) <= len(a.contributors) * CENT
    assert ("new" in top.tags) is (case == "new workload")
    sums_exactly(a.contributors, a.delta)
    assert {c.level for c in a.contributors} <= {"workload"}
    assert {c.level for c in top.children} == {"node"}


def test_price_change_on_one_node_split_into_volume_and_price(pods: list[dict[str, Any]]) -> None:
    """The engine prices a node the same at every instant (prices have no history), so a
    price change is injected into the core's input: guaranteed's rows from the raw CSV,
    with its busiest node's rate going from $3.06 to $6.12 a GPU-hour on day 140."""
    hours = {k: v for k, v in tr.daily_gpu_hours(pods).items() if k[1] == "guaranteed"}
    per_node: dict[str, Decimal] = defaultdict(Decimal)
    for (_, _, _, node), h in hours.items():
        per_node[node] += h
    node = max(per_node, key=lambda n: (per_node[n], n))
    new_rate, day = Decimal("6.12"), 140

    def rate(d: int, n: str) -> Decimal:
        return new_rate if n == node and d >= day else tr.RATE

    cells = tuple(
        Cell(d - tr.D0, (t, w, n), Amounts(cost=h * rate(d, n), gpu_hours=h))
        for (d, t, w, n), h in sorted(hours.items())
        if d == day or d < day  # the change is seen on its first day
    )
    steps = tuple(range(tr.D0 * DAY_MS, (day + 1) * DAY_MS, DAY_MS))
    series = Series("spend", ("team", "workload", "node"), DAY_MS, steps, day - tr.D0, cells)
    [a] = find_anomalies(series, Thresholds())
    assert a.start_ms == day * DAY_MS and a.scope == "guaranteed"
    node_parts = [c for w in a.contributors for c in w.children if c.name == node]
    assert node_parts and all("price change" in c.tags for c in node_parts)
    # the node's own jump, split by hand: volume = dHours x old rate, price = the rest
    h_now = sum((h for (d, _, _, n), h in hours.items() if d == day and n == node), Decimal(0))
    h_ref = sum((h for (d, _, _, n), h in hours.items() if day - 7 <= d < day and n == node),
                Decimal(0)) / 7  # fmt: skip
    jump = h_now * new_rate - h_ref * tr.RATE
    part = sum((c.delta for c in node_parts), Decimal(0))
    assert abs(part - jump) <= CENT * len(a.contributors)
    volume = sum((c.volume or Decimal(0) for c in node_parts), Decimal(0))
    price = sum((c.price or Decimal(0) for c in node_parts), Decimal(0))
    assert volume + price == part
    assert abs(volume - (h_now - h_ref) * tr.RATE) <= CENT * len(node_parts)
    assert abs(price - h_now * (new_rate - tr.RATE)) <= 2 * CENT * len(node_parts)
    assert a.contributors[0].name in {w for (_, _, w, n) in hours if n == node}
    sums_exactly(a.contributors, a.delta)


def test_ratio_metrics_sum_exactly(make_service: Callable[..., Service],
                                   pods: list[dict[str, Any]]) -> None:  # fmt: skip
    """Idle share and GPU-hours: whatever is found, each drill-down sums to its jump."""
    svc = loaded(make_service, pods, [("be/new-batch", "node-03", 134, 8, 0.25)], "r.duckdb")
    checked = 0
    for metric in ("idle_share", "gpu_hours"):
        report = svc.anomalies(window=tr.window(), by="team", metric=metric)
        for a in report.anomalies:
            sums_exactly(a.contributors, a.delta)
            checked += 1
    assert checked  # not vacuous: the trace has some in both


# -- faces ---------------------------------------------------------------------------------------


def test_cli_json_and_csv(make_service: Callable[..., Service], pods: list[dict[str, Any]],
                          cli: Any, tmp_path: Path) -> None:  # fmt: skip
    extra: Extra = [("be/new-batch", "node-03", d, 8, 1.0) for d in range(134, tr.D1)]
    svc = loaded(make_service, pods, extra, "cli.duckdb")
    svc.close()
    import yaml

    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(tr.PRICES))
    base = ("--db", str(tmp_path / "cli.duckdb"), "--config", str(config), "anomalies")
    out = cli(*base, "--window", tr.window(), "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    hit = [
        a for a in doc["anomalies"] if a["scope"] == "be" and a["start"] == "1970-05-15T00:00:00Z"
    ]
    assert hit and hit[0]["contributors"][0]["name"] == "be/new-batch"
    assert hit[0]["contributors"][0]["tags"] == ["new"]
    csv_out = cli(*base, "--window", tr.window(), "--format", "csv", cwd=tmp_path)
    assert csv_out.returncode == 0, csv_out.stderr
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("id,start,scope,level,path")
    assert any("be > be/new-batch," in line for line in lines)
    table = cli(*base, "--window", tr.window(), cwd=tmp_path)
    assert table.returncode == 0 and "be/new-batch" in table.stdout
    bad = cli(*base, "--metric", "nonsense", cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_api_anomalies(serve: Any, make_service: Callable[..., Service],
                       pods: list[dict[str, Any]], tmp_path: Path) -> None:  # fmt: skip
    extra: Extra = [("be/new-batch", "node-03", d, 8, 1.0) for d in range(134, tr.D1)]
    svc = loaded(make_service, pods, extra, "api.duckdb")
    token = svc.create_token("reader", "viewer")
    svc.close()
    api = serve(tmp_path / "api.duckdb", tr.PRICES)
    assert api.get("/api/v1/anomalies", window=tr.window()).status_code == 401
    doc = api.get("/api/v1/anomalies", token, window=tr.window()).json()
    assert any(a["scope"] == "be" and a["contributors"][0]["name"] == "be/new-batch"
               for a in doc["anomalies"])  # fmt: skip
    bad = api.get("/api/v1/anomalies", token, metric="nonsense")
    assert bad.status_code == 400 and "error" in bad.json()


# -- alerts --------------------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[Any]]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: (port, the mails it took)."""
    from aiosmtpd.controller import Controller

    mails: list[Any] = []

    class Handler:
        async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope)
            return "250 OK"

    port = free_port()
    server = Controller(Handler(), hostname="127.0.0.1", port=port)
    server.start()
    try:
        yield port, mails
    finally:
        server.stop()


def test_alert_once_by_mail(make_service: Callable[..., Service], pods: list[dict[str, Any]],
                            smtp: tuple[int, list[Any]]) -> None:  # fmt: skip
    port, mails = smtp
    extra: Extra = [("be/new-batch", "node-03", 146, 8, 1.0)]
    config = {"channels": {"ops": {"type": "email", "config": {
                  "host": "127.0.0.1", "port": port, "from": "aifinops@test",
                  "to": ["ops@test"], "starttls": False}}},
              "anomalies": {"channels": ["ops"], "last": "14d"}}  # fmt: skip
    svc = loaded(make_service, pods, extra, "mail.duckdb", config)
    first = svc.check_anomalies()
    assert svc.record_anomalies(first) >= 1
    mine = [e for e in first.events if e.scope == "team=be" and
            e.period_start == "1970-05-27T00:00:00Z"]  # fmt: skip
    # the message names the workload and why: it is new (it and its node, under it)
    assert len(mine) == 1 and mine[0].top_contributors[0][0] == "be/new-batch (new)"
    sent = svc.send_alerts(svc.due_alerts())
    svc.record_alerts_sent(sent)
    assert all(err is None for _, err in sent)
    # a second check finds the same anomalies: nothing new, nothing sent again
    second = svc.check_anomalies()
    assert second.events == [] and svc.record_anomalies(second) == 0
    svc.record_alerts_sent(svc.send_alerts(svc.due_alerts()))
    deadline = time.monotonic() + 10
    while len(mails) < len(first.events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(mails) == len(first.events)
    body = [m.content.decode() for m in mails if mine[0].key.encode() in m.content]
    assert len(body) == 1
    assert "Anomaly: spend spike for team=be" in body[0]


def test_serve_job_alerts_once(serve: Any, make_service: Callable[..., Service],
                               pods: list[dict[str, Any]], tmp_path: Path,
                               smtp: tuple[int, list[Any]]) -> None:  # fmt: skip
    """`aifinops serve`'s anomalies job finds the new workload's day on its own and mails
    it once; the alerts job sends it; a restart sends nothing again."""
    port, mails = smtp
    config = {**tr.PRICES,
              "channels": {"ops": {"type": "email", "config": {
                  "host": "127.0.0.1", "port": port, "from": "aifinops@test",
                  "to": ["ops@test"], "starttls": False}}},
              "anomalies": {"channels": ["ops"], "last": "7d"}}  # fmt: skip
    svc = loaded(make_service, pods, [("be/new-batch", "node-03", 146, 8, 1.0)], "job.duckdb")
    svc.close()
    api = serve(tmp_path / "job.duckdb", config, jobs=True)
    deadline = time.monotonic() + 120
    while not any(b"team=be" in m.content for m in mails) and time.monotonic() < deadline:
        time.sleep(0.2)
    # the first round's other anomalies may still be on their way: wait until no mail
    # has come for longer than the alerts job's period (5 s)
    seen, quiet_since = len(mails), time.monotonic()
    while time.monotonic() - quiet_since < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
        if len(mails) != seen:
            seen, quiet_since = len(mails), time.monotonic()
    mine = [m for m in mails if b"team=be" in m.content]
    assert len(mine) == 1 and b"be/new-batch" in mine[0].content
    api.server.should_exit = True
    api.thread.join(30)
    again = serve(tmp_path / "job.duckdb", config, jobs=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = next(j for j in again.get("/api/v1/jobs").json()["jobs"] if j["name"] == "anomalies")
        if job["runs"]:
            break
        time.sleep(0.2)
    assert job["runs"] and "0 new" in job["last_result"], job
    time.sleep(6)  # the alerts job's period: anything queued would go out
    assert len(mails) == seen


# -- the core by hand ----------------------------------------------------------------------------


def test_cost_per_1m_tokens_by_hand() -> None:
    """Model m: two workloads at $100 a day each, 1M tokens a day for 14 days; on day 14
    the tokens halve. Cost per 1M tokens: 200 expected, 400 actual, a jump of 200; the
    workloads' cost did not move (parts 0), the tokens' part is (0 - 200 x -0.5M) / 0.5M =
    200: all of it."""
    cells = []
    for day in range(15):
        for w in ("w1", "w2"):
            cells.append(Cell(day, ("m", w, "n1"), Amounts(cost=Decimal(100))))
        tokens = Decimal(500_000 if day == 14 else 1_000_000)
        cells.append(Cell(day, ("m", "(tokens served)", "(tokens served)"), Amounts(tokens=tokens)))
    steps = tuple(range(0, 15 * DAY_MS, DAY_MS))
    series = Series("cost_per_1m_tokens", ("model", "workload", "node"), DAY_MS, steps, 0,
                    tuple(cells))  # fmt: skip
    [a] = find_anomalies(series, Thresholds())
    assert (a.start_ms, a.actual, a.expected, a.delta) == (14 * DAY_MS, 400, 200, 200)
    top = a.contributors[0]
    assert (top.name, top.delta, top.share) == ("(tokens served)", 200, 1)
    sums_exactly(a.contributors, a.delta)


def test_hourly_same_hour_reference_by_hand() -> None:
    """Hourly steps: 8 days of 10 GPU-hours an hour on one workload, 100 at hour 8 of the
    last day. Reference: the same hour of the 7 days before (10); the jump 90, all of it
    the workload's; no other hour is out of band (all residuals 0 before)."""
    n = 8 * 24
    spike = 7 * 24 + 8
    cells = tuple(
        Cell(t, ("ml", "ml/train", "n1"), Amounts(gpu_hours=Decimal(100 if t == spike else 10)))
        for t in range(n)
    )
    series = Series("gpu_hours", ("team", "workload", "node"), 3_600_000,
                    tuple(range(0, n * 3_600_000, 3_600_000)), 0, cells)  # fmt: skip
    [a] = find_anomalies(series, Thresholds())
    assert a.start_ms == spike * 3_600_000 and a.reference == "same hour, previous 7 days"
    assert (a.actual, a.expected, a.delta) == (100, 10, 90)
    assert [(c.name, c.delta, c.share) for c in a.contributors] == [("ml/train", 90, 1)]


def test_below_the_least_amount_or_share_is_no_anomaly() -> None:
    """A flat $1,000 a day that moves by $40 (under min_amount 50), or by $150 on $1,000
    expected (15 %, under min_relative 20 %): neither is an anomaly; $250 (25 %) is."""

    def found(jump: int) -> int:
        cells = tuple(Cell(d, ("ml", "ml/a", "n1"), Amounts(cost=Decimal(1000 + jump * (d == 14))))
                      for d in range(15))  # fmt: skip
        s = Series("spend", ("team", "workload", "node"), DAY_MS,
                   tuple(range(0, 15 * DAY_MS, DAY_MS)), 0, cells)  # fmt: skip
        return len(find_anomalies(s, Thresholds()))

    assert (found(40), found(150), found(250), found(-250)) == (0, 0, 1, 1)


def test_new_unpriced_node_by_hand() -> None:
    """Team ml runs 10 GPU-hours a day on n1 for 15 days; on day 14 node nx, which has no
    price, runs 48 GPU-hours (the engine puts them under `__unpriced__`, on their node).
    GPU-hours of `__unpriced__`: 0 expected, 48 actual, a jump of 48 on nx, tagged."""
    cells = [Cell(d, ("ml", "ml/a", "n1"), Amounts(gpu_hours=Decimal(10))) for d in range(15)]
    cells.append(Cell(14, ("__unpriced__", "__unpriced__", "nx"), Amounts(gpu_hours=Decimal(48))))
    series = Series("gpu_hours", ("team", "workload", "node"), DAY_MS,
                    tuple(range(0, 15 * DAY_MS, DAY_MS)), 0, tuple(cells),
                    unpriced={(14, "nx"): Decimal(48)})  # fmt: skip
    [a] = find_anomalies(series, Thresholds(min_amount=Decimal(10)))
    assert (a.scope, a.actual, a.expected, a.delta, a.relative) == ("__unpriced__", 48, 0, 48, None)
    assert a.unpriced_nodes == ("nx",) and a.severity == "critical"
    [node] = a.contributors[0].children
    assert (node.name, node.delta, node.share) == ("nx", 48, 1)
    assert node.tags == ("new", "new unpriced node")


def test_chat_cards_say_what_moved_not_a_limit() -> None:
    """Slack's blocks and Teams' card for an anomaly show actual, expected and the jump
    (an anomaly has no limit to be spent against)."""
    from aifinops.core.anomaly_alert import AnomalyEvent
    from aifinops.outputs.notify import channel_config, outgoing

    event = AnomalyEvent(
        key="spend:team=be:1", action="fire", budget="anomaly spend", alert="spend",
        scope="team=be", threshold_percent=Decimal(0), basis="anomaly", severity="warning",
        spend=Decimal("900"), limit=Decimal("300"), forecast=Decimal("300"), currency="USD",
        period_start="2026-11-20T00:00:00Z", period_end="2026-11-21T00:00:00Z",
        at="2026-11-21T01:00:00Z", top_contributors=(("be/new-batch", Decimal("600")),),
        channels=(), metric="spend", delta=Decimal("600"), reference="same weekday, 4 weeks",
    )  # fmt: skip
    env = {"HOOK": "https://hooks.slack.com/services/T/B/X"}
    for kind in ("slack", "teams"):
        cfg = channel_config(kind, {"webhook_url": "env:HOOK"}, where="test")
        body = outgoing(cfg, event, env).body
        assert "of 300.00" not in body and "Spend" not in body
        assert "Expected" in body and "600.00 USD" in body and "be/new-batch" in body
    slack_cfg = channel_config("slack", {"webhook_url": "env:HOOK"}, where="test")
    slack = json.loads(outgoing(slack_cfg, event, env).body)
    assert slack["blocks"][1]["text"]["text"].startswith("Anomaly: spend spike")
