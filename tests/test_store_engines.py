"""The store's contract on each engine (DuckDB, PostgreSQL): migrations, exact decimals,
maps, idempotent writes, replaced ranges; `--db postgresql://` and AIFINOPS_DB from the
command line; a bad server named clearly; `store copy` both ways with the same costs.

Expected values are worked by hand: the fleet of tests/test_api.py (one L4 node at 4.00 a
GPU-hour, 2 GPUs for an hour: search holds GPU-0 the whole hour, ads GPU-1 half of it)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from aifinops.service import Service
from aifinops.sources import facts
from aifinops.store.db import LATEST_VERSION, Store
from tests.conftest import MIN, PG_URL, T0, PostgresSchemas, load_facts, sample, window
from tests.test_api import PRICES, fleet


@pytest.mark.engines
def test_migrations_make_the_same_tables_on_both(
    make_service: Callable[..., Service], engine: str
) -> None:
    svc = make_service()
    store = svc.store
    assert store.schema_version() == LATEST_VERSION
    assert store.is_postgres == (engine == "postgresql")
    other = Store(":memory:")  # DuckDB, the reference
    try:
        assert store.tables() == other.tables()
        for table in other.tables():
            assert list(store.table(table).columns) == list(other.table(table).columns), table
    finally:
        other.close()
    # migrating again applies nothing
    assert store.migrate() == []


@pytest.mark.engines
def test_money_stays_exact(make_service: Callable[..., Service]) -> None:
    """Ten lines of 0.1 sum to 1 exactly (a float sum gives 0.9999999999999999), and a
    cost of 12 decimals comes back with all of them."""
    store = make_service().store
    lines = pa.table(
        {
            "provider": ["aws"] * 10,
            "billed_cost": pa.array(
                [Decimal("0.1")] * 9 + [Decimal("0.100000000001")], pa.decimal128(38, 12)
            ),
            "line_hash": [f"h{i}" for i in range(10)],
        }
    )
    store.insert_arrow("cost_lines", lines)
    (total,) = store.raw("SELECT sum(billed_cost) FROM cost_lines")[0]
    assert isinstance(total, Decimal) and total == Decimal("1.000000000001")
    t = store.table("cost_lines")
    got = store.arrow(t.aggregate(total=t.billed_cost.sum()))
    assert pa.types.is_decimal(got.schema.field("total").type)
    assert got.column("total")[0].as_py() == Decimal("1.000000000001")


@pytest.mark.engines
def test_labels_round_trip_and_upserts_replace(make_service: Callable[..., Service]) -> None:
    store = make_service().store
    labels = {"team": 'o\'brien "ml"', "ai-finops.io/project": "näive, {x}=>y", "empty": ""}
    node = {"node_id": "n1", "gpu_model": "NVIDIA L4", "gpu_count": 2, "labels": labels}
    store.upsert_arrow("nodes", facts.rows_table([node], facts.NODES), "node_id")
    store.upsert_arrow("nodes", facts.rows_table([node], facts.NODES), "node_id")
    assert store.count("nodes") == 1
    (row,) = store.arrow(store.table("nodes").select("node_id", "labels")).to_pylist()
    assert dict(row["labels"]) == labels
    n = store.table("nodes")
    team = store.arrow(n.select(team=n.labels["team"])).column("team")[0].as_py()
    assert team == 'o\'brien "ml"'
    where = store.map_value("labels", "ai-finops.io/project")
    assert store.raw(f"SELECT {where} FROM nodes") == [("näive, {x}=>y",)]
    assert store.raw(f"SELECT {store.map_value('labels', 'absent')} FROM nodes") == [(None,)]


@pytest.mark.engines
def test_samples_replaced_in_a_range(make_service: Callable[..., Service]) -> None:
    """Two hours of one GPU; the second hour replaced: its samples and its presence go,
    then come back once."""
    svc = make_service(PRICES)
    node = {"node_id": "n1", "gpu_model": "NVIDIA L4", "gpu_count": 1, "source": "t"}
    rows = []
    for t in range(T0, T0 + 120 * MIN, MIN):
        rows += sample(t, "n1", "GPU-0", [(None, 1, 1, 0.0)])
    load_facts(svc, [node], [], rows)
    store = svc.store
    assert store.count("gpu_usage") == 120 and store.count("node_presence") == 120
    store.delete_usage(["n1"], T0 + 60 * MIN, T0 + 120 * MIN)
    assert store.count("gpu_usage") == 60 and store.count("node_presence") == 60
    store.delete_usage([], T0, T0 + 120 * MIN)  # no node: nothing
    assert store.count("gpu_usage") == 60
    # one L4 hour at 4.00, all idle
    report = svc.cost(window=window(2), by=["team"])
    assert sum(r.total_cost for r in report.rows) == Decimal("4.00")


@pytest.mark.engines
def test_the_fleet_costs_the_same(make_service: Callable[..., Service]) -> None:
    svc = make_service(PRICES)
    fleet(svc)
    report = svc.cost(window=window(1), by=["team"])
    got = {r.key["team"]: r.total_cost for r in report.rows}
    # search: 1 GPU-hour (4.00); ads: half an hour (2.00); GPU-1's idle half (2.00)
    assert got == {"search": Decimal("4.00"), "ads": Decimal("2.00"), "__idle__": Decimal("2.00")}


@pytest.mark.engines
def test_the_command_line_on_each_engine(
    make_service: Callable[..., Service], cli: Callable[..., Any], tmp_path: Path, engine: str
) -> None:
    import subprocess
    import sys

    svc = make_service(PRICES)
    fleet(svc)
    db = svc.store.path
    svc.close()
    (tmp_path / "prices.yaml").write_text(json.dumps(PRICES))
    args = ["--config", "prices.yaml", "cost", "--window", window(1), "--format", "json"]
    by_flag = cli("--db", db, *args, cwd=tmp_path)
    assert by_flag.returncode == 0, by_flag.stderr
    env = {**os.environ, "AIFINOPS_DB": db}
    by_env = subprocess.run([sys.executable, "-m", "aifinops", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["rows"] == json.loads(by_flag.stdout)["rows"]
    total = sum(Decimal(str(r["total_cost"])) for r in json.loads(by_flag.stdout)["rows"])
    assert total == Decimal("8.00")


def test_a_dead_server_is_named_without_its_password(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.conftest import free_port

    url = f"postgresql://aifinops:s3cret@127.0.0.1:{free_port()}/nowhere"
    run = cli("--db", url, "cost", cwd=tmp_path)
    assert run.returncode != 0
    assert "cannot connect to PostgreSQL" in run.stderr
    assert "aifinops:***@127.0.0.1" in run.stderr and "s3cret" not in run.stderr


def test_store_copy_both_ways_keeps_the_costs(
    make_service: Callable[..., Service],
    cli: Callable[..., Any],
    tmp_path: Path,
    pg_schemas: PostgresSchemas,
) -> None:
    """DuckDB -> PostgreSQL -> a new DuckDB file: every table's rows, the same cost to
    the cent, and a finding's events keep their order (the sequence continues)."""
    svc = make_service(PRICES)
    fleet(svc)
    svc.store.raw(
        "INSERT INTO finding_events (id, ts_ms, event, seq) VALUES "
        "('f1', 1, 'found', nextval('event_seq')), ('f1', 1, 'applied', nextval('event_seq'))"
    )
    src = svc.store.path
    svc.close()
    pg = pg_schemas.url("copy")
    back = str(tmp_path / "back.duckdb")
    for frm, to in ((src, pg), (pg, back)):
        run = cli("store", "copy", "--from", frm, "--to", to, "--format", "json", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        rows = {t["table"]: t["rows"] for t in doc["tables"]}
        assert rows["gpu_usage"] == 120 and rows["nodes"] == 1 and rows["workloads"] == 2
        assert rows["finding_events"] == 2
    (tmp_path / "prices.yaml").write_text(json.dumps(PRICES))
    costs = []
    for db in (src, pg, back):
        run = cli("--db", db, "--config", "prices.yaml", "cost", "--window", window(1),
                  "--format", "json", cwd=tmp_path)  # fmt: skip
        assert run.returncode == 0, run.stderr
        costs.append(json.loads(run.stdout)["rows"])
    assert costs[0] == costs[1] == costs[2]
    again = cli("store", "copy", "--from", src, "--to", pg, cwd=tmp_path)
    assert again.returncode != 0 and "not empty" in again.stderr
    copied = Store(back)
    try:
        copied.raw(
            "INSERT INTO finding_events (id, ts_ms, event, seq) "
            "VALUES ('f1', 1, 'reopened', nextval('event_seq'))"
        )
        events = copied.raw("SELECT event FROM finding_events WHERE id = 'f1' ORDER BY ts_ms, seq")
        assert [e for (e,) in events] == ["found", "applied", "reopened"]
    finally:
        copied.close()
    assert PG_URL in pg


def test_the_demo_reads_the_same_on_both_engines(
    cli: Callable[..., Any], tmp_path: Path, pg_schemas: PostgresSchemas
) -> None:
    """The whole demo, built on a DuckDB file and on PostgreSQL: every line of its report
    (costs by team, model and node, budgets, the forecast, 30 recommendations, idle and
    waste) the same but the store's name and the time it took."""
    import re

    pg = pg_schemas.url("demo")
    outs = []
    for db, where in ((str(tmp_path / "demo.duckdb"), tmp_path), (pg, tmp_path / "pg")):
        where.mkdir(exist_ok=True)
        run = cli("--db", db, "demo", cwd=where)
        assert run.returncode == 0, run.stderr
        text = run.stdout.replace(f"'{db}'", "STORE").replace(db, "STORE")
        text = re.sub(r"--config \S+", "--config CONFIG", text)
        outs.append(re.sub(r"in [0-9.]+ s:", "in T:", text))
    assert "asset cost of the priced nodes in the window: 17,622.21 USD" in outs[0]
    assert outs[1].splitlines() == outs[0].splitlines()


def test_postgresql_sessions_get_memory_for_groupings_unless_set_by_the_user(
    pg_schemas: PostgresSchemas,
) -> None:
    """A year's groupings need more than PostgreSQL's default 4 MB of work_mem and 8 MB of
    temp_buffers, and JIT and merge joins only slow them: the session raises the first two
    and turns off the others, unless the connection chose them itself (the URL's options)."""
    url = pg_schemas.url("session")
    store = Store(url)
    assert store.raw("SELECT current_setting('work_mem')") == [("256MB",)]
    assert store.raw("SELECT current_setting('temp_buffers')") == [("256MB",)]
    assert store.raw("SELECT current_setting('jit')") == [("off",)]
    assert store.raw("SELECT current_setting('enable_mergejoin')") == [("off",)]
    store.close()
    chosen = Store(
        url + "&options=-c%20work_mem%3D8MB%20-c%20jit%3Don%20-c%20enable_mergejoin%3Don"
        "%20-c%20temp_buffers%3D16MB"
    )
    assert chosen.raw("SELECT current_setting('work_mem')") == [("8MB",)]
    assert chosen.raw("SELECT current_setting('temp_buffers')") == [("16MB",)]
    assert chosen.raw("SELECT current_setting('jit')") == [("on",)]
    assert chosen.raw("SELECT current_setting('enable_mergejoin')") == [("on",)]
    chosen.close()
