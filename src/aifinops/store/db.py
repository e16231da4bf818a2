"""Open the store (DuckDB by default), apply migrations, and write facts set-at-a-time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pyarrow as pa

from aifinops.arrow_sql import sql_type
from aifinops.errors import StoreError
from aifinops.store.migrations import MIGRATIONS

DEFAULT_DB = "aifinops.duckdb"
LATEST_VERSION = MIGRATIONS[-1][0]

# DuckDB lets one process write a file, or any number read it, never both at once: an open
# that meets the other kind's lock is retried for this long (seconds), backing off
LOCK_WAIT_S = 5.0


# a DuckDB database file starts with an 8-byte checksum, then this magic
DUCKDB_MAGIC = (8, b"DUCK")
_STORE_HINT = "give --db (or AIFINOPS_DB) a DuckDB database, or a new path for a new store"


def refuse_non_duckdb(path: Path) -> None:
    """Refuse an existing path that is not a DuckDB database before connecting: DuckDB
    opens some small files of other kinds (a CSV, a Parquet file) as if they were empty
    stores, and the ingest that follows would seem to work and keep nothing."""
    if not path.exists():
        return  # a new store
    if path.is_dir():
        raise StoreError("a directory, not a DuckDB database", where=str(path), hint=_STORE_HINT)
    offset, magic = DUCKDB_MAGIC
    try:
        with path.open("rb") as fh:
            head = fh.read(offset + len(magic))
    except OSError as error:
        raise StoreError(
            f"cannot read the store: {error.strerror}", where=str(path), hint=_STORE_HINT
        ) from error
    if head[offset:] == magic:
        return
    if not head:
        what = "an empty file"
    elif head[:4] == b"PAR1":
        what = "a Parquet file"
    else:
        what = "a file of another kind"
    raise StoreError(
        f"{what}, not a DuckDB database; it was left as it is",
        where=str(path),
        hint=_STORE_HINT + " (an input file is loaded with `aifinops ingest ...`)",
    )


class Store:
    """A connection to the fact store through Ibis. Read-write (the default) migrates the
    schema; `Store.for_reads` opens it read-only, so reads run beside a writer's runs and on
    a read-only file."""

    _stages = 0

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        lock_wait: float = LOCK_WAIT_S,
    ):
        self.path = str(path) if path is not None else ":memory:"
        self.read_only = read_only
        self._tables: dict[str, ibis.Table] = {}
        if self.path != ":memory:":
            refuse_non_duckdb(Path(self.path))
        try:
            if self.path != ":memory:" and not read_only:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.con = _connect(self.path, read_only, lock_wait)
        except StoreError:
            raise
        except Exception as exc:  # duckdb raises IOException, ConnectionException...
            raise StoreError(
                f"cannot open the store: {exc}",
                where=self.path,
                hint="check the path given by --db or AIFINOPS_DB, and that no other "
                "aifinops process holds it open for writing",
            ) from exc
        if not read_only:
            self.migrate()

    @classmethod
    def for_reads(
        cls, path: str | os.PathLike[str] | None, *, lock_wait: float = LOCK_WAIT_S
    ) -> Store:
        """Open the store to read: read-only and without migrations, so a read runs while
        `collect` writes between its runs, several reads run at once, and a read-only file
        can be read. A store whose schema is behind this version's is opened read-write once
        instead (migrated, as every command did before), and that connection is kept for the
        read. Where no store exists yet, a read finds an empty one in memory: it says there is
        nothing to read, and leaves no file behind."""
        if path is None or str(path) == ":memory:" or not Path(path).exists():
            return cls(None, lock_wait=lock_wait)
        try:
            store = cls(path, read_only=True, lock_wait=lock_wait)
        except StoreError as error:
            if not isinstance(error.__cause__, duckdb.ConnectionException):
                raise
            # this process holds the file read-write already (a test, the demo): DuckDB
            # shares one database per file and process, so use that configuration
            return cls(path, lock_wait=lock_wait)
        if store.schema_version() >= LATEST_VERSION:
            return store
        store.close()
        return cls(path, lock_wait=lock_wait)

    def close(self) -> None:
        self.con.disconnect()

    # -- schema -----------------------------------------------------------------------
    def migrate(self) -> list[int]:
        self.raw(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP DEFAULT now())"
        )
        done = {r[0] for r in self.raw("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, statements in MIGRATIONS:
            if version in done:
                continue
            with self.transaction():
                for statement in statements:
                    self.raw(statement)
                self.raw(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name]
                )
            applied.append(version)
        self._tables.clear()
        return applied

    def schema_version(self) -> int:
        """The newest migration applied; 0 for a database that has none (a new file)."""
        if not self.raw(
            "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND table_name = 'schema_migrations'"
        ):
            return 0
        rows = self.raw("SELECT max(version) FROM schema_migrations")
        return int(rows[0][0] or 0) if rows else 0

    # -- access -----------------------------------------------------------------------
    def raw(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run SQL on the DuckDB connection (DDL, upserts, small lookups); fetch it all.

        Heavy queries go through Ibis; this is for statements and one-row answers.
        """
        duck = self.con.con
        result = duck.execute(sql, params) if params is not None else duck.execute(sql)
        try:
            return list(result.fetchall())
        except Exception:  # statements without a result set
            return []

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection under Ibis, for a reader that converts a file set at a time
        in DuckDB straight into a stage of ours (`sources.bills.engine.stage_bill`): the rows
        go from the file to the store without an Arrow hand-off between two databases."""
        return self.con.con

    def table(self, name: str) -> ibis.Table:
        """The table as an Ibis expression. Its columns are asked of DuckDB once per
        connection (a query each time, several per `cost`): only a migration changes them."""
        found = self._tables.get(name)
        if found is None:
            found = self._tables[name] = self.con.table(name)
        return found

    def arrow(self, expr: ibis.Expr) -> pa.Table:
        """Run an Ibis expression and fetch its result as Arrow, typed as the expression's
        schema. Every query of store/ fetches through here: Ibis's own `to_pyarrow`
        imports pandas (a second, cold) for its type converter, which a read never needs."""
        from ibis.formats.pyarrow import PyArrowData

        table = expr.as_table()
        # what `to_pyarrow` does first: register the memtables (and UDFs) it refers to
        self.con._run_pre_execute_hooks(table)
        result = self.con.con.sql(self.con.compile(table)).to_arrow_table()
        return PyArrowData.convert_table(result, table.schema())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.raw("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.raw("ROLLBACK")
            raise
        else:
            self.raw("COMMIT")

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        """Append an Arrow table whose columns are a subset of the target's."""
        if data.num_rows == 0:
            return 0
        view = f"_incoming_{table}"
        duck = self.con.con
        duck.register(view, data)
        try:
            cols = ", ".join(f'"{c}"' for c in data.column_names)
            duck.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM "{view}"').fetchall()
        finally:
            duck.unregister(view)
        return data.num_rows

    def upsert_arrow(self, table: str, data: pa.Table, key: str) -> int:
        """Replace rows with the same key, then insert: re-ingest never duplicates."""
        if data.num_rows == 0:
            return 0
        view = f"_incoming_{table}"
        duck = self.con.con
        duck.register(view, data)
        try:
            duck.execute(
                f'DELETE FROM "{table}" WHERE "{key}" IN (SELECT "{key}" FROM "{view}")'
            ).fetchall()
            cols = ", ".join(f'"{c}"' for c in data.column_names)
            duck.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM "{view}"').fetchall()
        finally:
            duck.unregister(view)
        return data.num_rows

    def delete_keys(self, table: str, data: pa.Table, keys: Sequence[str]) -> None:
        """Delete the rows of `table` whose `keys` equal those of a row of `data`."""
        if data.num_rows == 0:
            return
        view = f"_keys_{table}"
        duck = self.con.con
        duck.register(view, data.select(list(keys)))
        try:
            match = " AND ".join(f't."{k}" = k."{k}"' for k in keys)
            duck.execute(f'DELETE FROM "{table}" t USING "{view}" k WHERE {match}').fetchall()
        finally:
            duck.unregister(view)

    # -- GPU samples --------------------------------------------------------------------
    def write_usage(self, data: pa.Table) -> int:
        """Append `gpu_usage` rows and their per-node roll-up (`node_presence`)."""
        if data.num_rows == 0:
            return 0
        rows = self.insert_arrow("gpu_usage", data)
        duck = self.con.con
        duck.register("_incoming_presence", data.select(["node_id", "ts_ms", "held_req"]))
        try:
            duck.execute(
                "INSERT INTO node_presence SELECT node_id, ts_ms, sum(held_req) "
                "FROM _incoming_presence GROUP BY node_id, ts_ms"
            ).fetchall()
        finally:
            duck.unregister("_incoming_presence")
        return rows

    def stage(self, prefix: str, schema: pa.Schema) -> str:
        """A temporary table shaped like `schema`, to collect a long read in parts."""
        Store._stages += 1
        name = f"_stage_{prefix}_{Store._stages}"
        # DDL from the Arrow types: building an empty Arrow table from Python makes pyarrow
        # import pandas (seconds, cold)
        cols = ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in schema)
        self.raw(f'CREATE TEMP TABLE "{name}" ({cols})')
        return name

    def temp_values(
        self, prefix: str, columns: Sequence[tuple[str, str]], data: Sequence[Sequence[Any]]
    ) -> str:
        """A temporary table of `columns` (name, SQL type) holding `data`, one sequence of
        Python values per column (all of one length), built by DuckDB from lists: a read
        then names it (`table(name)`) where it would have made an Ibis memtable, which
        builds Arrow from Python objects, and pyarrow imports pandas for that (a second,
        cold). A DECIMAL column is given its values as text, so they are kept exactly.
        Returns the name; `drop_stage` drops it."""
        Store._stages += 1
        name = f"_values_{prefix}_{Store._stages}"
        selects, params = [], []
        for i, ((column, kind), values) in enumerate(zip(columns, data, strict=True), 1):
            if kind.upper().startswith("DECIMAL"):
                selects.append(f'CAST(unnest(CAST(${i} AS VARCHAR[])) AS {kind}) AS "{column}"')
                params.append([None if v is None else format(v, "f") for v in values])
            else:
                selects.append(f'CAST(unnest(CAST(${i} AS {kind}[])) AS {kind}) AS "{column}"')
                params.append(list(values))
        self.raw(f'CREATE TEMP TABLE "{name}" AS SELECT {", ".join(selects)}', params)
        return name

    def stage_append(self, name: str, data: pa.Table) -> int:
        return self.insert_arrow(name, data)

    def drop_stage(self, name: str) -> None:
        self.raw(f'DROP TABLE IF EXISTS "{name}"')

    def write_usage_from(self, stage: str) -> int:
        """Append staged `gpu_usage` rows and their roll-up."""
        cols = "ts_ms, node_id, gpu_id, workload_id, held_req, held_use, used"
        self.raw(f'INSERT INTO gpu_usage ({cols}) SELECT {cols} FROM "{stage}"')
        self.raw(
            "INSERT INTO node_presence SELECT node_id, ts_ms, sum(held_req) "
            f'FROM "{stage}" GROUP BY node_id, ts_ms'
        )
        return self.count(stage)

    def delete_usage(self, node_ids: Sequence[str], start_ms: int, end_ms: int) -> None:
        """Drop the samples of these nodes in [start, end), with their roll-up."""
        for table in ("gpu_usage", "node_presence"):
            self.raw(
                f"DELETE FROM {table} WHERE node_id IN (SELECT unnest(?)) "
                "AND ts_ms >= ? AND ts_ms < ?",
                [list(node_ids), start_ms, end_ms],
            )

    def count(self, table: str) -> int:
        rows = self.raw(f'SELECT count(*) FROM "{table}"')
        return int(rows[0][0]) if rows else 0


def _connect(path: str, read_only: bool, lock_wait: float) -> Any:
    """Connect, retrying while another process holds a conflicting lock on the file (a
    writer, for a read; readers or a writer, for a write) for up to `lock_wait` seconds."""
    deadline, pause = time.monotonic() + lock_wait, 0.05
    while True:
        try:
            return ibis.duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            # DuckDB has no error class of its own for a lock held elsewhere; its message
            # is the one way to tell it from a missing or unreadable file
            if "could not set lock" not in str(exc).lower():
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreError(
                    "another aifinops process is writing to the store (collect, an ingest)"
                    if read_only
                    else "another aifinops process has the store open (collect, an ingest, "
                    "or a read)",
                    where=path,
                    hint=f"tried for {lock_wait:g} s; run the command again when it is done "
                    "(collect holds the store only while a run writes), or give another "
                    "store with --db",
                ) from exc
            time.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)
