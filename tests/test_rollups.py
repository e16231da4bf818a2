"""Hourly and daily roll-ups and retention (docs/decisions/0020): the cost of an aligned
window from the roll-ups equals the hand-worked values and the raw samples' answer to the
cent; late and replaced samples keep them in step; retention deletes raw samples only
where a roll-up holds them; the migration fills them for an older store.

The fleet: one H100 (n1/g0) at $3.00 per GPU-hour, ten-minute samples over three hours
across a day boundary (T0 is 2026-11-23T00:00Z):
  hour A [T0-1h, T0):    a/w1 60 min, half busy        -> a $3.00 (waste $1.50)
  hour B [T0, T0+1h):    a/w1 30 min, b/w2 30 min       -> a $1.50, b $1.50
  hour C [T0+1h, T0+2h): idle 50 min (one sample short) -> __idle__ $2.50
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifinops.core.model import IDLE
from aifinops.core.windows import from_ms
from aifinops.service import Service
from aifinops.sources import facts
from aifinops.store import facts as stored
from aifinops.store import rollups
from aifinops.store.allocate import AllocationQuery, allocate, price_table
from aifinops.store.db import Store
from aifinops.store.units import energy_increases
from tests.conftest import HOUR, MIN, T0, load_facts, sample

DAY = 24 * HOUR
TEN = 10 * MIN
CONFIG: dict[str, Any] = {"prices": {"gpu_models": {"H100": 3.00}}}
NODE = {"node_id": "n1", "gpu_model": "NVIDIA H100 80GB HBM3", "gpu_count": 1,
        "util_signal": "test-signal", "source": "test"}  # fmt: skip


def pod(wid: str, team: str, node: str = "n1", **kw: Any) -> dict[str, Any]:
    return {"workload_id": wid, "kind": "pod", "namespace": team, "node_id": node,
            "labels": {"team": team}, "source": "test", **kw}  # fmt: skip


def tens(start: int, n: int) -> range:
    return range(start, start + n * TEN, TEN)


def fleet_samples() -> list[dict[str, Any]]:
    out = [r for t in tens(T0 - HOUR, 6) for r in sample(t, "n1", "g0", [("a/w1", 1, 1, 0.5)], TEN)]
    out += [r for t in tens(T0, 3) for r in sample(t, "n1", "g0", [("a/w1", 1, 1, 1)], TEN)]
    out += [
        r for t in tens(T0 + 3 * TEN, 3) for r in sample(t, "n1", "g0", [("b/w2", 1, 1, 1)], TEN)
    ]
    out += [r for t in tens(T0 + HOUR, 5) for r in sample(t, "n1", "g0", [(None, 1, 1, 0)], TEN)]
    return out


def fleet(make_service: Callable[..., Service], **kw: Any) -> Service:
    svc = make_service(CONFIG, **kw)
    load_facts(svc, [NODE], [pod("a/w1", "a"), pod("b/w2", "b")], fleet_samples())
    return svc


def span(start: int, end: int) -> str:
    return f"{from_ms(start).isoformat()},{from_ms(end).isoformat()}"


def by_team(svc: Service, start: int, end: int, step: str | None = None) -> dict[Any, Decimal]:
    report = svc.cost(window=span(start, end), by=["team"], step=step)
    return {(r.start, r.key["team"]) if step else r.key["team"]: r.total_cost for r in report.rows}


def d(text: str) -> Decimal:
    return Decimal(text)


def raw_and_rolled(svc: Service, start: int, end: int, step: int, **kw: Any) -> list[Any]:
    """The allocation of the window from each table that fits it: raw first."""
    prices, nodes = svc.prices.node_prices(())
    query = AllocationQuery(start, end, step, ("team",), **kw)
    rules = svc.settings.attribution.rules()
    fitting = [s for s in (rollups.RAW, rollups.HOURLY, rollups.DAILY)
               if all(v % (s.grain_ms or 1) == 0 for v in (start, end, step))]  # fmt: skip
    return [
        allocate(svc.store, query, price_table(prices, nodes), rules, source=s).rows.to_pylist()
        for s in fitting
    ]


def test_the_picker_takes_the_coarsest_table_that_fits() -> None:
    assert rollups.usage_source(T0, T0 + DAY, DAY) is rollups.DAILY
    assert rollups.usage_source(T0, T0 + DAY, HOUR) is rollups.HOURLY
    assert rollups.usage_source(T0 + HOUR, T0 + DAY, DAY) is rollups.HOURLY
    assert rollups.usage_source(T0, T0 + DAY, 15 * MIN) is rollups.RAW
    assert rollups.usage_source(T0 + 1, T0 + HOUR, HOUR) is rollups.RAW
    assert rollups.energy_table(T0, T0 + DAY) == "gpu_energy_daily"
    assert rollups.energy_table(T0, T0 + HOUR) == "gpu_energy_hourly"
    assert rollups.energy_table(None, None) == "gpu_energy_daily"
    assert rollups.energy_table(T0 + MIN, T0 + HOUR) is None


@pytest.mark.engines
def test_aligned_windows_cost_the_same_from_roll_ups_as_from_samples(
    make_service: Callable[..., Service],
) -> None:
    svc = fleet(make_service)
    # three hours, step 1h (the hourly roll-up): a 1.5 h, b 0.5 h, idle 50 min at $3.00
    assert by_team(svc, T0 - HOUR, T0 + 2 * HOUR) == {
        "a": d("4.50"), "b": d("1.50"), IDLE: d("2.50")}  # fmt: skip
    stepped = by_team(svc, T0 - HOUR, T0 + 2 * HOUR, step="1h")
    assert stepped == {("2026-11-22T23:00:00Z", "a"): d("3.00"),
                       ("2026-11-23T00:00:00Z", "a"): d("1.50"),
                       ("2026-11-23T00:00:00Z", "b"): d("1.50"),
                       ("2026-11-23T01:00:00Z", IDLE): d("2.50")}  # fmt: skip
    # two days, step 1d (the daily roll-up)
    daily = by_team(svc, T0 - DAY, T0 + DAY, step="1d")
    assert daily == {("2026-11-22T00:00:00Z", "a"): d("3.00"),
                     ("2026-11-23T00:00:00Z", "a"): d("1.50"),
                     ("2026-11-23T00:00:00Z", "b"): d("1.50"),
                     ("2026-11-23T00:00:00Z", IDLE): d("2.50")}  # fmt: skip
    # and exactly the raw samples' rows, per step and not, under either idle policy
    for step in (HOUR, DAY):
        for kw in ({}, {"per_step": True}, {"idle": "even"}):
            raw, *rolled = raw_and_rolled(svc, T0 - DAY, T0 + DAY, step, **kw)
            assert rolled and all(r == raw for r in rolled), (step, kw)


@pytest.mark.engines
def test_time_sliced_request_shares_hold_per_group_of_holders(
    make_service: Callable[..., Service],
) -> None:
    """n2 has two replicas; a/w1 and b/w2 ask for one each. One sample both hold (split
    evenly: 5 min each), one a/w1 alone: by request, a/w1 has half of each (5 + 5 min),
    b/w2 5 min, the rest 5 min idle. A roll-up that forgot who held which sample would
    give b/w2 the 5 idle minutes. A third sample, a/w1's two processes (two rows of one
    holder): its request counts once, 5 min, and 5 min idle."""
    svc = make_service(CONFIG)
    node = {**NODE, "node_id": "n2", "gpu_replicas": 2}
    wl = [pod("a/w1", "a", "n2", gpu_request=1.0), pod("b/w2", "b", "n2", gpu_request=1.0)]
    both = sample(T0, "n2", "g0", [("a/w1", 0.5, 0.5, 0.5), ("b/w2", 0.5, 0.5, 0.5)], TEN)
    alone = sample(T0 + TEN, "n2", "g0", [("a/w1", 1, 1, 1)], TEN)
    twice = sample(T0 + 2 * TEN, "n2", "g0", [("a/w1", 0.5, 0.5, 0.5)] * 2, TEN)
    load_facts(svc, [node], wl, both + alone + twice)
    # $3.00 per GPU-hour: 15 min = $0.75, 10 min = $0.50, 5 min = $0.25
    assert by_team(svc, T0, T0 + HOUR) == {"a": d("0.75"), "b": d("0.25"), IDLE: d("0.50")}
    raw, hourly = raw_and_rolled(svc, T0, T0 + HOUR, HOUR)
    assert hourly == raw


@pytest.mark.engines
def test_late_and_replaced_samples_update_the_roll_ups(
    make_service: Callable[..., Service],
) -> None:
    svc = fleet(make_service)
    store = svc.store
    # the late sample: hour C's last ten minutes, b/w2's
    late = sample(T0 + HOUR + 5 * TEN, "n1", "g0", [("b/w2", 1, 1, 1)], TEN)
    load_facts(svc, [NODE], [], late)
    assert by_team(svc, T0 - HOUR, T0 + 2 * HOUR) == {
        "a": d("4.50"), "b": d("2.00"), IDLE: d("2.50")}  # fmt: skip
    # hour B read again: b/w2 held it all (a/w1's half goes, b's half stays as b's)
    again = [r for t in tens(T0, 6) for r in sample(t, "n1", "g0", [("b/w2", 1, 1, 1)], TEN)]
    table = facts.usage_table(*_columns(again))
    with store.transaction():
        stored.replace_usage(store, table, T0, T0 + HOUR)
    assert by_team(svc, T0 - HOUR, T0 + 2 * HOUR) == {
        "a": d("3.00"), "b": d("3.50"), IDLE: d("2.50")}  # fmt: skip
    assert by_team(svc, T0 - DAY, T0 + DAY, step="1d") == {
        ("2026-11-22T00:00:00Z", "a"): d("3.00"),
        ("2026-11-23T00:00:00Z", "b"): d("3.50"),
        ("2026-11-23T00:00:00Z", IDLE): d("2.50")}  # fmt: skip
    # a/w1 left no row of hour B behind in the roll-ups (no zero rows)
    left = store.raw("SELECT count(*) FROM gpu_usage_hourly WHERE workload_id = 'a/w1' "
                     "AND ts_ms = ?", [T0])  # fmt: skip
    assert left[0][0] == 0
    raw, *rolled = raw_and_rolled(svc, T0 - DAY, T0 + DAY, DAY)
    assert rolled and all(r == raw for r in rolled)


def _columns(rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    import numpy as np

    return (
        np.array([s["ts"] for s in rows], dtype=np.int64),
        [s["node"] for s in rows],
        [s["gpu"] for s in rows],
        [s["w"] for s in rows],
        np.array([s["req"] for s in rows], dtype=np.int64),
        np.array([s["use"] for s in rows], dtype=np.int64),
        np.array([s["used"] for s in rows], dtype=np.int64),
    )


def reading(ts: int, mj: float) -> dict[str, Any]:
    return {"ts_ms": ts, "node_id": "n1", "gpu_id": "g0", "energy_mj": mj, "power_w": None,
            "fb_used_mib": None, "source": "test"}  # fmt: skip


def energy(store: Store, start: int | None, end: int | None) -> tuple[float, int]:
    rows = energy_increases(store, start, end).to_pylist()
    return (rows[0]["energy_mj"], rows[0]["span_ms"]) if rows else (0.0, 0)


@pytest.mark.engines
def test_energy_roll_ups_count_increases_and_resets_as_the_readings_do(
    make_service: Callable[..., Service],
) -> None:
    """Readings every 30 min: 1000, 1600 | 2000, 500 (a reset) | 900, 1300. Increases
    per hour: A 600; B 400 + 500 = 900; C 400 + 400 = 800; each 30 min apart."""
    svc = make_service(CONFIG)
    store = svc.store
    marks = [1000.0, 1600.0, 2000.0, 500.0, 900.0, 1300.0]
    rows = [reading(T0 - HOUR + i * 30 * MIN, mj) for i, mj in enumerate(marks)]
    with store.transaction():
        stored.replace_energy(store, rows, T0 - HOUR, T0 + 2 * HOUR)
    assert energy(store, T0, T0 + 2 * HOUR) == (1700.0, 4 * 30 * MIN)  # hourly
    assert energy(store, T0 - DAY, T0 + DAY) == (2300.0, 5 * 30 * MIN)  # daily
    # the same from the raw readings (a window off the hour by 1 ms reads them)
    assert energy(store, T0 - HOUR + 1, T0 + 2 * HOUR + 1) == (2300.0, 5 * 30 * MIN)
    # hour B read again: one reading, 2300 at T0+15m. Increases: B 700 (45 min after
    # 1600); C: 900 is now a reset (900), then 400: 1300 (45 + 30 min)
    with store.transaction():
        stored.replace_energy(store, [reading(T0 + 15 * MIN, 2300.0)], T0, T0 + HOUR)
    assert energy(store, T0, T0 + HOUR) == (700.0, 45 * MIN)
    assert energy(store, T0 + HOUR, T0 + 2 * HOUR) == (1300.0, 75 * MIN)
    assert energy(store, T0 - DAY, T0) == (600.0, 30 * MIN)
    assert energy(store, T0, T0 + DAY) == (2000.0, 120 * MIN)
    assert energy(store, None, None) == (2600.0, 150 * MIN)


@pytest.mark.engines
def test_retention_deletes_only_what_a_roll_up_holds(
    make_service: Callable[..., Service],
) -> None:
    now = [T0 + 40 * DAY]
    svc = fleet(make_service, clock=lambda: datetime.fromtimestamp(now[0] / 1000, UTC))
    store = svc.store
    before = by_team(svc, T0 - HOUR, T0 + 2 * HOUR)
    # hour A's hourly usage lost (a store out of step): its raw samples must stay
    store.raw("CREATE TEMP TABLE hour_a AS SELECT * FROM gpu_usage_hourly WHERE ts_ms = ?",
              [T0 - HOUR])  # fmt: skip
    store.raw("DELETE FROM gpu_usage_hourly WHERE ts_ms = ?", [T0 - HOUR])
    stats = {t["table"]: t for t in svc.store_stats()["tables"]}
    assert stats["gpu_usage"]["rows"] == 17 and stats["gpu_usage"]["removable"] == 11
    assert stats["gpu_usage_daily"]["first"] == "2026-11-22T00:00:00Z"
    dry = svc.compact_store(dry_run=True)
    removed = {r["table"]: r["removed"] for r in dry["tables"]}
    # 30 days kept: the 17 samples' usage rows (6 + 6 + 5) but hour A's 6, all 17
    # presence instants, no roll-up (400 days, forever)
    assert removed["gpu_usage"] == 11 and removed["node_presence"] == 17
    assert removed["gpu_usage_hourly"] == removed["gpu_usage_daily"] == 0
    assert store.count("gpu_usage") == 17  # a dry run deletes nothing
    done = svc.compact_store()
    assert done["removed"] == 28
    assert store.raw("SELECT count(*), min(ts_ms), max(ts_ms) FROM gpu_usage")[0] == (
        6,
        T0 - HOUR,
        T0 - HOUR + 5 * TEN,
    )
    # the same cost (hour A's hourly rows put back, hours B and C from the roll-up)
    store.raw("INSERT INTO gpu_usage_hourly SELECT * FROM hour_a")
    assert by_team(svc, T0 - HOUR, T0 + 2 * HOUR) == before
    # a window a minute past the hour reads the raw samples: hour A's a/w1, 60 min at
    # $3.00, and a note on the 11 rows (hours B and C) that only the roll-ups hold now
    report = svc.cost(window=span(T0 - HOUR, T0 + 2 * HOUR + MIN), by=["team"])
    assert {r.key["team"]: r.total_cost for r in report.rows} == {"a": d("3.00")}
    assert any(n.startswith("11 rows of samples of this window's hours") for n in report.notes)
    assert not any("rows of samples" in n for n in svc.cost(
        window=span(T0 - HOUR, T0 + 2 * HOUR), by=["team"]).notes)  # fmt: skip
    # 500 days on: the hourly roll-ups (400 days) go where the daily hold them; a day
    # window with a day's step still costs the same
    now[0] = T0 + 500 * DAY
    svc.compact_store()
    assert store.count("gpu_usage_hourly") == store.count("node_presence_hourly") == 0
    assert store.count("gpu_usage") == 0  # past 30 days, and its hour rolled up now
    assert by_team(svc, T0 - DAY, T0 + DAY, step="1d") == {
        ("2026-11-22T00:00:00Z", "a"): d("3.00"),
        ("2026-11-23T00:00:00Z", "a"): d("1.50"),
        ("2026-11-23T00:00:00Z", "b"): d("1.50"),
        ("2026-11-23T00:00:00Z", IDLE): d("2.50"),
    }


@pytest.mark.engines
def test_compaction_merges_the_rows_of_one_key(make_service: Callable[..., Service]) -> None:
    svc = fleet(make_service)
    # the late sample appended a second row for hour C's b/w2 key? No: a new key. Load
    # hour A's first sample's holder again as another batch: two rows of one key
    load_facts(svc, [NODE], [], sample(T0 - HOUR + 6 * TEN - 1, "n1", "g0",
                                       [("a/w1", 1, 1, .5)], 1))  # fmt: skip
    before = svc.store.count("gpu_usage_hourly")
    done = svc.compact_store()
    merged = {r["table"]: r["merged"] for r in done["tables"]}
    assert merged["gpu_usage_hourly"] == 1 and merged["gpu_usage_daily"] == 1
    assert svc.store.count("gpu_usage_hourly") == before - 1


def test_migration_fills_the_roll_ups_of_an_older_store(
    make_service: Callable[..., Service],
) -> None:
    svc = fleet(make_service)
    path = svc.settings.db
    expected = by_team(svc, T0 - HOUR, T0 + 2 * HOUR)
    store = svc.store
    with store.transaction():  # as if version 17 had never run
        for table in rollups.KEYS:
            store.raw(f"DROP TABLE {table}")
        store.raw("DELETE FROM schema_migrations WHERE version = 17")
    svc.close()
    reopened = Store(path)
    try:
        assert reopened.schema_version() >= 17
        # hour A: 60 min held by a/w1 in the hourly roll-up, 6 samples
        assert reopened.raw(
            "SELECT CAST(sum(held_req) AS BIGINT), sum(samples) FROM gpu_usage_hourly "
            "WHERE ts_ms = ?", [T0 - HOUR])[0] == (HOUR, 6)  # fmt: skip
        assert reopened.raw("SELECT CAST(sum(dev) AS BIGINT) FROM node_presence_daily "
                            "WHERE ts_ms = ?", [T0])[0][0] == 110 * MIN  # fmt: skip
    finally:
        reopened.close()
    assert by_team(svc, T0 - HOUR, T0 + 2 * HOUR) == expected


def test_retention_settings_are_checked() -> None:
    from aifinops.config import RetentionConfig

    with pytest.raises(ValueError, match="at least a day"):
        RetentionConfig(samples="1h")
    with pytest.raises(ValueError, match=r"shorter than retention\.samples"):
        RetentionConfig(samples="60d", hourly="30d")
    with pytest.raises(ValueError, match="cannot read"):
        RetentionConfig(daily="soon")
    assert RetentionConfig(samples="forever", hourly="forever").kept_ms("daily") is None


def test_store_stats_and_compact_commands(cli: Callable[..., Any], tmp_path: Path) -> None:
    # a day's samples five days ago (from the wall clock: the CLI's now), kept 1 day
    day = int(datetime.now(UTC).timestamp() * 1000) // DAY * DAY - 5 * DAY
    db = tmp_path / "cli.duckdb"
    cfg = tmp_path / "aifinops.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "retention": {"samples": "1d", "hourly": "2d"}}))
    from aifinops.config import load_settings

    with Service(load_settings(cfg, env={}, flags={"db": str(db)})) as svc:
        rows = [r for t in tens(day, 6) for r in sample(t, "n1", "g0", [("a/w1", 1, 1, 1)], TEN)]
        load_facts(svc, [NODE], [pod("a/w1", "a")], rows)
    base = ("--config", str(cfg), "--db", str(db))
    stats = cli(*base, "store", "stats", "--format", "json", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    tables = {t["table"]: t for t in json.loads(stats.stdout)["tables"]}
    assert tables["gpu_usage"]["rows"] == 6 and tables["gpu_usage"]["removable"] == 6
    assert tables["gpu_usage_hourly"]["rows"] == 1
    assert tables["gpu_usage_hourly"]["removable"] == 1  # the daily holds it
    assert tables["gpu_usage_daily"]["removable"] == 0  # forever
    assert tables["gpu_usage"]["first"] == from_ms(day).isoformat().replace("+00:00", "Z")
    dry = cli(*base, "store", "compact", "--dry-run", "--format", "json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
    assert json.loads(dry.stdout)["removed"] == 6 + 6 + 1 + 1  # usage, presence, hourly x2
    again = json.loads(cli(*base, "store", "stats", "--format", "json", cwd=tmp_path).stdout)
    assert {t["table"]: t["rows"] for t in again["tables"]}["gpu_usage"] == 6
    done = cli(*base, "store", "compact", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "removed 14 row(s)" in done.stdout
    cost = cli(*base, "cost", "--window", span(day, day + DAY), "--step", "1d", "--format",
               "json", cwd=tmp_path)  # fmt: skip
    assert cost.returncode == 0, cost.stderr
    assert json.loads(cost.stdout)["rows"][0]["total_cost"] == 3.0  # an hour at $3.00


def test_the_server_compacts_each_retention_every(tmp_path: Path) -> None:
    from aifinops.api.server import Server
    from aifinops.config import load_settings

    # a day's samples five days before the wall clock (the server's now), kept 1 day
    day = int(datetime.now(UTC).timestamp() * 1000) // DAY * DAY - 5 * DAY
    cfg = tmp_path / "aifinops.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "retention": {"samples": "1d", "hourly": "2d"}}))
    settings = load_settings(cfg, env={}, flags={"db": str(tmp_path / "serve.duckdb")})
    with Service(settings) as svc:
        rows = [r for t in tens(day, 6) for r in sample(t, "n1", "g0", [("a/w1", 1, 1, 1)], TEN)]
        load_facts(svc, [NODE], [pod("a/w1", "a")], rows)
    server = Server(settings)
    try:
        job = server.scheduler.jobs["compact"]
        server.scheduler.run(job)
        assert job.last_result is None  # not in the first hour
        server._compacted_at -= 3600  # an hour on
        server.scheduler.run(job)
        assert job.last_error is None
        assert job.last_result == "14 row(s) past retention removed, 0 merged"
        assert server._compact() is None  # not again within retention.every
    finally:
        server.close()
    with Service(settings) as svc:
        assert svc.store.count("gpu_usage") == 0 and svc.store.count("gpu_usage_daily") == 1


def test_the_auto_step_is_a_day_for_windows_over_31_whole_days() -> None:
    from aifinops.core.windows import Window, allocation_step

    def window(start: str, end: str) -> Window:
        return Window.parse(f"{start},{end}")

    year = window("2025-12-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert allocation_step("auto", year) == DAY
    assert allocation_step("AUTO", year) == DAY
    # 31 days (a long month) stay hourly; 32 days are daily
    assert allocation_step("auto", window("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")) == HOUR
    assert allocation_step("auto", window("2026-01-01T00:00:00Z", "2026-02-02T00:00:00Z")) == DAY
    # ends inside a day: hourly, however long
    assert allocation_step("auto", window("2026-01-01T06:00:00Z", "2026-06-01T00:00:00Z")) == HOUR
    # a duration is taken as it is
    assert allocation_step("2h", year) == 2 * HOUR
    assert allocation_step("15m", year) == 15 * MIN


@pytest.mark.engines
def test_a_window_kept_whole_scans_the_coarsest_roll_up_inside_it(
    make_service: Callable[..., Service],
) -> None:
    """Without steps in the output, the scan sums each holder over the whole window: a
    two-day window at the 1 h step reads the daily usage roll-up (the hourly one emptied
    here gives the same money), and the node presence of its hours."""
    svc = fleet(make_service)
    want = {"a": d("4.50"), "b": d("1.50"), IDLE: d("2.50")}
    assert by_team(svc, T0 - DAY, T0 + DAY) == want
    svc.store.raw("DELETE FROM gpu_usage_hourly")
    svc.store.raw("DELETE FROM gpu_usage")
    assert by_team(svc, T0 - DAY, T0 + DAY) == want
    # steps in the output read the table of the step: the hourly one, now empty
    assert by_team(svc, T0 - DAY, T0 + DAY, step="1h") == {}


def test_the_step_setting_is_checked() -> None:
    from pydantic import ValidationError

    from aifinops.config import AllocationConfig

    assert AllocationConfig().step == "auto"
    assert AllocationConfig(step="1d").step == "1d"
    for bad in ("30s", "daily", ""):
        with pytest.raises(ValidationError):
            AllocationConfig(step=bad)
