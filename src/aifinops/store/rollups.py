"""Hourly and daily roll-ups of GPU usage, node presence and GPU energy: kept in step with
every write of the samples, chosen by a window's alignment, and the retention that deletes
what a coarser table holds (docs/decisions/0020).

Every statement here is portable SQL (PostgreSQL as well as DuckDB): `?` parameters, plain
GROUP BY, `ts_ms - ts_ms % grain` for the start of a UTC hour or day of ms since the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aifinops.store.db import Store

HOUR_MS = 3_600_000
# a list of node ids as one parameter: one statement text whatever the count
NODES = "(SELECT unnest(CAST(? AS VARCHAR[])))"
DAY_MS = 86_400_000
GRAINS: tuple[tuple[str, int], ...] = (("hourly", HOUR_MS), ("daily", DAY_MS))
# the readings before a replaced span that its first readings' increases are taken against
ENERGY_LOOKBACK_MS = DAY_MS

USAGE_COLS = "ts_ms, node_id, gpu_id, holders, workload_id, held_req, held_use, used, samples"
USAGE_KEY = "ts_ms, node_id, gpu_id, holders, workload_id"
PRESENCE_COLS = "node_id, ts_ms, dev, samples"
ENERGY_COLS = "ts_ms, node_id, gpu_id, energy_mj, span_ms, samples"
# roll-up table -> its key (rows with the same key are summed by every reader)
KEYS: dict[str, str] = {
    **{f"gpu_usage_{g}": USAGE_KEY for g, _ in GRAINS},
    **{f"node_presence_{g}": "node_id, ts_ms" for g, _ in GRAINS},
    **{f"gpu_energy_{g}": "ts_ms, node_id, gpu_id" for g, _ in GRAINS},
}
ROLLED_UP = ("gpu_usage", "node_presence", "gpu_energy")
_temps = count(1)


# -- which tables a window reads ------------------------------------------------------------
@dataclass(frozen=True)
class UsageSource:
    """The tables an allocation reads, and what tells one sample's rows from another's (a
    roll-up holds groups of samples with the same holders, not samples)."""

    usage: str
    presence: str
    grain_ms: int | None  # None: the raw samples
    sample_keys: tuple[str, ...]


RAW = UsageSource("gpu_usage", "node_presence", None, ("ts_ms", "node_id", "gpu_id"))
HOURLY = UsageSource(
    "gpu_usage_hourly", "node_presence_hourly", HOUR_MS, ("ts_ms", "node_id", "gpu_id", "holders")
)
DAILY = UsageSource(
    "gpu_usage_daily", "node_presence_daily", DAY_MS, ("ts_ms", "node_id", "gpu_id", "holders")
)
SOURCES = {"raw": RAW, "hourly": HOURLY, "daily": DAILY}


def usage_source(start_ms: int, end_ms: int, step_ms: int) -> UsageSource:
    """The coarsest table whose every row lies inside one step of the window: daily when
    the window's ends and its step are whole UTC days, hourly when whole hours, else the raw
    samples. Allocation sums rows per step and never looks inside one, so the sums (and
    the money) are the same whichever of them it reads."""
    for source in (DAILY, HOURLY):
        grain = source.grain_ms or 1
        if start_ms % grain == 0 and end_ms % grain == 0 and step_ms % grain == 0:
            return source
    return RAW


def energy_table(start_ms: int | None, end_ms: int | None) -> str | None:
    """The energy roll-up a window reads (None: the raw readings): ends that are whole
    days or hours, or no end at all (every reading: the daily roll-up holds them all)."""
    ends = [t for t in (start_ms, end_ms) if t is not None]
    if all(t % DAY_MS == 0 for t in ends):
        return "gpu_energy_daily"
    if all(t % HOUR_MS == 0 for t in ends):
        return "gpu_energy_hourly"
    return None


def samples_compacted(store: Store, start_ms: int, end_ms: int) -> int:
    """How many samples of the hours around [start, end) only a roll-up holds (retention
    deleted them): a read of the raw samples misses them. Counted against the hourly
    roll-up, or the daily one where the hourly holds none of these hours (past its own
    retention); a sample at an edge hour (day) outside the window counts too."""
    for name, grain in GRAINS:
        lo, hi = start_ms - start_ms % grain, end_ms + (-end_ms) % grain
        rolled = store.raw(
            f"SELECT sum(samples) FROM gpu_usage_{name} WHERE ts_ms >= ? AND ts_ms < ?", [lo, hi]
        )[0][0]
        if rolled is None:
            continue  # none in this table: the coarser one may hold them
        kept = store.raw("SELECT count(*) FROM gpu_usage WHERE ts_ms >= ? AND ts_ms < ?", [lo, hi])[
            0
        ][0]
        return max(int(rolled) - int(kept), 0)
    return 0


# -- the roll-ups' rows from samples ---------------------------------------------------------
def _usage_rows(src: str, grain: int, sign: str = "") -> str:
    """Roll-up rows of the samples in `src` (a table, or a parenthesised SELECT aliased by
    the caller's placement), with `sign` "-" to take them away. A sample's holders are
    its workload ids, sorted, joined by '|'."""
    return f"""
        SELECT b.bucket AS ts_ms, b.node_id, b.gpu_id, b.holders, b.workload_id,
               {sign}sum(b.held_req) AS held_req, {sign}sum(b.held_use) AS held_use,
               {sign}sum(b.used) AS used, {sign}count(*) AS samples
        FROM (
            SELECT u.ts_ms - u.ts_ms % {grain} AS bucket, u.node_id, u.gpu_id, h.holders,
                   u.workload_id, u.held_req, u.held_use, u.used
            FROM {src} u
            JOIN (
                SELECT ts_ms, node_id, gpu_id,
                       coalesce(string_agg(workload_id, '|' ORDER BY workload_id), '')
                           AS holders
                FROM {src} s GROUP BY ts_ms, node_id, gpu_id
            ) h ON h.ts_ms = u.ts_ms AND h.node_id = u.node_id AND h.gpu_id = u.gpu_id
        ) b
        GROUP BY b.bucket, b.node_id, b.gpu_id, b.holders, b.workload_id
    """


def _presence_rows(src: str, grain: int, sign: str = "") -> str:
    """Roll-up rows of node_presence-shaped rows (node_id, ts_ms, dev) in `src`."""
    return f"""
        SELECT p.node_id, p.ts_ms - p.ts_ms % {grain} AS ts_ms, {sign}sum(p.dev) AS dev,
               {sign}count(*) AS samples
        FROM {src} p GROUP BY p.node_id, p.ts_ms - p.ts_ms % {grain}
    """


def _energy_increases(where: str, lookback: str, grain: int) -> str:
    """Per GPU and hour (day) of the readings that `where` picks: the sum of each counter
    reading's increase over the reading before it (a drop is a reset: the reading is the
    increase), as store/units.py `energy_increases` counts them, the time between them and
    how many; the readings before are those `lookback` picks."""
    return f"""
        SELECT r.ts_ms - r.ts_ms % {grain} AS ts_ms, r.node_id, r.gpu_id,
               sum(CASE WHEN r.prev IS NULL THEN 0.0
                        WHEN r.energy_mj >= r.prev THEN r.energy_mj - r.prev
                        ELSE r.energy_mj END) AS energy_mj,
               sum(CASE WHEN r.prev_ts IS NULL THEN 0 ELSE r.ts_ms - r.prev_ts END) AS span_ms,
               count(*) AS samples
        FROM (
            SELECT ts_ms, node_id, gpu_id, energy_mj,
                   lag(energy_mj) OVER (PARTITION BY node_id, gpu_id ORDER BY ts_ms) AS prev,
                   lag(ts_ms) OVER (PARTITION BY node_id, gpu_id ORDER BY ts_ms) AS prev_ts
            FROM gpu_energy WHERE energy_mj IS NOT NULL AND {lookback}
        ) r
        WHERE {where}
        GROUP BY r.ts_ms - r.ts_ms % {grain}, r.node_id, r.gpu_id
    """


def fill_rollups() -> list[str]:
    """The statements that fill the roll-ups from every stored sample (migration 17)."""
    out = []
    for grain, ms in GRAINS:
        out.append(f"INSERT INTO gpu_usage_{grain} ({USAGE_COLS}) {_usage_rows('gpu_usage', ms)}")
        out.append(
            f"INSERT INTO node_presence_{grain} ({PRESENCE_COLS}) "
            f"{_presence_rows('node_presence', ms)}"
        )
        out.append(
            f"INSERT INTO gpu_energy_{grain} ({ENERGY_COLS}) "
            f"{_energy_increases('1 = 1', '1 = 1', ms)}"
        )
    return out


# -- in step with the writes ------------------------------------------------------------------
def add_usage(store: Store, src: str, params: Sequence[Any] = ()) -> None:
    """Add samples just written (`src`: the stage or view they came from, or a
    parenthesised SELECT over `gpu_usage` with `params`) to every roll-up. Their node
    presence is what Store.write_usage writes: per node and instant, the held time."""
    presence = f"(SELECT node_id, ts_ms, sum(held_req) AS dev FROM {src} x GROUP BY node_id, ts_ms)"
    for grain, ms in GRAINS:
        store.raw(
            f"INSERT INTO gpu_usage_{grain} ({USAGE_COLS}) {_usage_rows(src, ms)}",
            [*params, *params],
        )
        store.raw(
            f"INSERT INTO node_presence_{grain} ({PRESENCE_COLS}) {_presence_rows(presence, ms)}",
            list(params),
        )


def add_usage_arrow(store: Store, data: Any) -> None:
    """`add_usage` of an Arrow table of samples."""
    with store.attached("_incoming_rollup", data) as view:
        add_usage(store, f'"{view}"')


def remove_usage(store: Store, node_ids: Sequence[str], start_ms: int, end_ms: int) -> None:
    """Take the samples of these nodes in [start, end), about to be deleted (or changed),
    out of every roll-up: each hour (day) they touch is merged with their negation, and a
    key left with no samples goes. Nothing is read back from raw samples beyond those, so
    hours whose other samples retention already deleted keep them in the roll-up."""
    if not node_ids:
        return
    picked = f"node_id IN {NODES} AND ts_ms >= ? AND ts_ms < ?"
    raw_params = [list(node_ids), start_ms, end_ms]
    if not store.raw(f"SELECT 1 FROM gpu_usage WHERE {picked} LIMIT 1", raw_params):
        return  # nothing stored there yet: a first read of the span
    usage = f"(SELECT * FROM gpu_usage WHERE {picked})"
    presence = f"(SELECT node_id, ts_ms, dev FROM node_presence WHERE {picked})"
    for grain, ms in GRAINS:
        span = [list(node_ids), start_ms - start_ms % ms, _ceil(end_ms, ms)]
        _merge(
            store,
            f"gpu_usage_{grain}",
            USAGE_COLS,
            USAGE_KEY,
            f"SELECT {USAGE_COLS} FROM gpu_usage_{grain} WHERE {picked} "
            f"UNION ALL {_usage_rows(usage, ms, '-')}",
            [*span, *raw_params, *raw_params],
            picked,
            span,
        )
        _merge(
            store,
            f"node_presence_{grain}",
            PRESENCE_COLS,
            KEYS[f"node_presence_{grain}"],
            f"SELECT {PRESENCE_COLS} FROM node_presence_{grain} WHERE {picked} "
            f"UNION ALL {_presence_rows(presence, ms, '-')}",
            [*span, *raw_params],
            picked,
            span,
        )


def claim_usage(
    store: Store, node_id: str, start_ms: int, end_ms: int, update: str, params: Sequence[Any]
) -> None:
    """Run `update` (an UPDATE of the holders of this node's samples in [start, end)) with
    the roll-ups in step: those samples leave them before and come back after."""
    remove_usage(store, [node_id], start_ms, end_ms)
    store.raw(update, params)
    add_usage(
        store,
        "(SELECT * FROM gpu_usage WHERE node_id = ? AND ts_ms >= ? AND ts_ms < ?)",
        [node_id, start_ms, end_ms],
    )


def rebuild_presence(store: Store) -> None:
    """The presence roll-ups made again from `node_presence` (after `store repair` rebuilt
    it): each hour that has raw instants from them, then each day that has hourly rows
    from those. Retention deletes whole hours of samples and whole days of hourly rows,
    so those are complete."""
    for table, src, grain in (
        ("node_presence_hourly", "node_presence", HOUR_MS),
        ("node_presence_daily", "node_presence_hourly", DAY_MS),
    ):
        store.raw(
            f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {src} p "
            f"WHERE p.node_id = {table}.node_id AND p.ts_ms - p.ts_ms % {grain} = {table}.ts_ms)"
        )
        counted = "count(*)" if src == "node_presence" else "sum(p.samples)"
        store.raw(
            f"INSERT INTO {table} ({PRESENCE_COLS}) "
            f"SELECT p.node_id, p.ts_ms - p.ts_ms % {grain}, sum(p.dev), {counted} "
            f"FROM {src} p GROUP BY p.node_id, p.ts_ms - p.ts_ms % {grain}"
        )


@dataclass(frozen=True)
class EnergyChange:
    """The energy readings about to change: these nodes' readings in [lo, hi), the span
    their increases reach (the first reading after `hi` is taken against a changed one),
    and their increases before the change (a temporary table)."""

    nodes: tuple[str, ...]
    lo: int
    hi: int
    before: str


def energy_before(store: Store, node_ids: Sequence[str], lo: int, hi: int) -> EnergyChange:
    """Note these nodes' energy increases that a replacement of their readings in [lo, hi)
    can change; `energy_after` puts the difference into the roll-ups."""
    nodes = tuple(sorted(set(node_ids)))
    nxt = store.raw(
        f"SELECT max(f) FROM (SELECT min(ts_ms) AS f FROM gpu_energy WHERE node_id IN {NODES} "
        "AND energy_mj IS NOT NULL AND ts_ms >= ? GROUP BY node_id, gpu_id) m",
        [list(nodes), hi],
    )
    last = nxt[0][0] if nxt and nxt[0][0] is not None else None
    upper = _ceil(max(hi, int(last) + 1) if last is not None else hi, DAY_MS)
    change = EnergyChange(nodes, lo - lo % DAY_MS, upper, f"_energy_before_{next(_temps)}")
    _energy_snapshot(store, change, change.before)
    return change


def energy_after(store: Store, change: EnergyChange) -> None:
    """Add to the energy roll-ups what the replacement changed: its increases now, less
    those `energy_before` noted."""
    after = f"_energy_after_{next(_temps)}"
    _energy_snapshot(store, change, after)
    picked = f"node_id IN {NODES} AND ts_ms >= ? AND ts_ms < ?"
    span = [list(change.nodes), change.lo, change.hi]
    for grain, ms in GRAINS:
        delta = " UNION ALL ".join(
            f"SELECT ts_ms - ts_ms % {ms} AS ts_ms, node_id, gpu_id, {sign}energy_mj, "
            f'{sign}span_ms, {sign}samples FROM "{table}"'
            for table, sign in ((after, ""), (change.before, "-"))
        )
        _merge(
            store,
            f"gpu_energy_{grain}",
            ENERGY_COLS,
            KEYS[f"gpu_energy_{grain}"],
            f"SELECT {ENERGY_COLS} FROM gpu_energy_{grain} WHERE {picked} UNION ALL {delta}",
            span,
            picked,
            span,
        )
    store.raw(f'DROP TABLE IF EXISTS "{after}"')
    store.raw(f'DROP TABLE IF EXISTS "{change.before}"')


def _energy_snapshot(store: Store, change: EnergyChange, name: str) -> None:
    select = _energy_increases(
        "r.ts_ms >= ?",
        f"node_id IN {NODES} AND ts_ms >= ? AND ts_ms < ?",
        HOUR_MS,
    )
    store.raw(
        f'CREATE TEMP TABLE "{name}" AS {select}',
        [list(change.nodes), change.lo - ENERGY_LOOKBACK_MS, change.hi, change.lo],
    )


def _merge(
    store: Store,
    table: str,
    cols: str,
    key: str,
    rows: str,
    params: Sequence[Any],
    where: str = "1 = 1",
    where_params: Sequence[Any] = (),
) -> None:
    """Replace the rows of `table` that `where` picks by `rows` (which read them), merged:
    one row per key, the values summed, and keys with no samples left out."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in cols.split(", ") if c not in key.split(", "))
    merged = f"_merged_{next(_temps)}"
    store.raw(
        f'CREATE TEMP TABLE "{merged}" AS SELECT {key}, {sums} FROM ({rows}) x '
        f"GROUP BY {key} HAVING sum(samples) <> 0",
        list(params),
    )
    try:
        store.raw(f"DELETE FROM {table} WHERE {where}", list(where_params))
        store.raw(f'INSERT INTO {table} ({cols}) SELECT {cols} FROM "{merged}"')
    finally:
        store.raw(f'DROP TABLE IF EXISTS "{merged}"')


def _ceil(ms: int, grain: int) -> int:
    return ms + (-ms) % grain


# -- compaction and retention -----------------------------------------------------------------
def merge_rows(store: Store, dry_run: bool = False) -> dict[str, int]:
    """Per roll-up table, how many rows merging its rows of one key into one removes (and,
    unless `dry_run`, merge them)."""
    out = {}
    cols = {"gpu_usage": USAGE_COLS, "node_presence": PRESENCE_COLS, "gpu_energy": ENERGY_COLS}
    for table, key in KEYS.items():
        keys = store.raw(f"SELECT count(*) FROM (SELECT 1 AS one FROM {table} GROUP BY {key}) k")
        extra = store.count(table) - int(keys[0][0])
        out[table] = extra
        if extra and not dry_run:
            table_cols = cols[table.rsplit("_", 1)[0]]
            _merge(store, table, table_cols, key, f"SELECT {table_cols} FROM {table}", [])
    return out


@dataclass(frozen=True)
class Expiry:
    """What retention removes from one table: rows before `horizon_ms` (None: kept
    forever) whose coarser roll-up (`covered_by`) holds them."""

    table: str
    horizon_ms: int | None
    covered_by: str | None


def expiries(
    now_ms: int, samples_ms: int | None, hourly_ms: int | None, daily_ms: int | None
) -> list[Expiry]:
    """The tables retention removes from, and before when: raw samples before the hour
    `samples_ms` ago (where the hourly roll-up holds them), the hourly roll-ups before the
    day `hourly_ms` ago (where the daily holds them), the daily before `daily_ms` ago."""

    def horizon(keep: int | None, grain: int) -> int | None:
        return None if keep is None else max(now_ms - keep, 0) // grain * grain

    out = []
    for table in ROLLED_UP:
        out.append(Expiry(table, horizon(samples_ms, HOUR_MS), f"{table}_hourly"))
        out.append(Expiry(f"{table}_hourly", horizon(hourly_ms, DAY_MS), f"{table}_daily"))
        out.append(Expiry(f"{table}_daily", horizon(daily_ms, DAY_MS), None))
    return out


def _expired(expiry: Expiry) -> str:
    """The WHERE clause of the rows that `expiry` removes (one parameter: its horizon)."""
    t = expiry.table
    if expiry.covered_by is None:
        return "ts_ms < ?"
    grain = DAY_MS if expiry.covered_by.endswith("_daily") else HOUR_MS
    on = f"c.node_id = {t}.node_id AND c.ts_ms = {t}.ts_ms - {t}.ts_ms % {grain}"
    if not t.startswith("node_presence"):
        on += f" AND c.gpu_id = {t}.gpu_id"
    covered = f"EXISTS (SELECT 1 FROM {expiry.covered_by} c WHERE {on})"
    if t == "gpu_energy":
        # readings with no energy counter (power, memory) have no roll-up: the
        # recommendation rules read them over recent windows only
        covered = f"(energy_mj IS NULL OR {covered})"
    return f"ts_ms < ? AND {covered}"


def expired_rows(store: Store, expiry: Expiry) -> int:
    if expiry.horizon_ms is None:
        return 0
    found = store.raw(
        f"SELECT count(*) FROM {expiry.table} WHERE {_expired(expiry)}", [expiry.horizon_ms]
    )
    return int(found[0][0])


def delete_expired(store: Store, expiry: Expiry) -> int:
    found = expired_rows(store, expiry)
    if found:
        store.raw(f"DELETE FROM {expiry.table} WHERE {_expired(expiry)}", [expiry.horizon_ms])
    return found


def store_tables(store: Store) -> list[str]:
    """The store's own tables (not temporary ones, not another schema's), sorted."""
    found = store.raw(
        "SELECT DISTINCT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_catalog = current_database() "
        "AND table_type = 'BASE TABLE'"
    )
    return sorted(str(r[0]) for r in found if not str(r[0]).startswith("_"))


def span(store: Store, table: str) -> tuple[int, int] | None:
    """The first and last instants (row starts) in a table with `ts_ms`, or None."""
    row = store.raw(f"SELECT min(ts_ms), max(ts_ms) FROM {table}")[0]
    return None if row[0] is None else (int(row[0]), int(row[1]))
