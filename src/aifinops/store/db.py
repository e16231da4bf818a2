"""Open the store (DuckDB by default), apply migrations, and write facts set-at-a-time."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pyarrow as pa

from aifinops.arrow_sql import sql_type
from aifinops.errors import StoreError
from aifinops.store import rollups
from aifinops.store.engine import DuckDB, Engine, PostgreSQL, is_postgres, redact
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
        self.engine: Engine
        if is_postgres(self.path):
            self.engine = PostgreSQL(self.path)
            self.where = redact(self.path)
        else:
            self.where = self.path
            if self.path != ":memory:":
                refuse_non_duckdb(Path(self.path))
            try:
                if self.path != ":memory:" and not read_only:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self.engine = DuckDB(self.path, read_only=read_only, lock_wait=lock_wait)
            except StoreError:
                raise
            except Exception as exc:  # duckdb raises IOException, ConnectionException...
                raise StoreError(
                    f"cannot open the store: {exc}",
                    where=self.path,
                    hint="check the path given by --db or AIFINOPS_DB, and that no other "
                    "aifinops process holds it open for writing",
                ) from exc
        self.con = self.engine.con
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
        if path is not None and is_postgres(str(path)):
            # a server has no single-writer lock: one connection reads beside the writers
            return cls(path, lock_wait=lock_wait)
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

    @property
    def is_postgres(self) -> bool:
        return self.engine.name == "postgresql"

    def close(self) -> None:
        self.engine.close()

    # -- schema -----------------------------------------------------------------------
    def migrate(self) -> list[int]:
        if not isinstance(self.engine, PostgreSQL):
            return self._migrate()
        with self.engine.migrating():
            self.engine.prepare()
            return self._migrate()

    def _migrate(self) -> list[int]:
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
        if not self.engine.table_exists("schema_migrations"):
            return 0
        rows = self.raw("SELECT max(version) FROM schema_migrations")
        return int(rows[0][0] or 0) if rows else 0

    # -- access -----------------------------------------------------------------------
    def raw(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run SQL (DuckDB's dialect, `?` parameters; translated for PostgreSQL by the
        engine): DDL, upserts, small lookups; fetch it all.

        Heavy queries go through Ibis; this is for statements and one-row answers.
        """
        return self.engine.execute(sql, params)

    def create_temp(self, name: str, expr: ibis.Table, index: Sequence[str] = ()) -> ibis.Table:
        """A temporary table holding an expression's result, as a table expression. On
        PostgreSQL, `index` (columns) is indexed, for a join that looks up ranges of it
        (DuckDB joins ranges without one)."""
        if isinstance(self.engine, DuckDB):
            return self.con.create_table(name, expr, temp=True)
        self.con._run_pre_execute_hooks(expr)
        self.engine.execute_compiled(f'CREATE TEMP TABLE "{name}" AS {self.con.compile(expr)}')
        # Ibis's PostgreSQL SQL hands a map (jsonb) out as text: the table keeps it a map
        for column, kind in expr.schema().items():
            if kind.is_map():
                self.engine.execute_compiled(
                    f'ALTER TABLE "{name}" ALTER COLUMN "{column}" TYPE JSONB '
                    f'USING CAST("{column}" AS JSONB)'
                )
        if index:
            cols = ", ".join(f'"{c}"' for c in index)
            self.engine.execute_compiled(f'CREATE INDEX ON "{name}" ({cols})')
        # no autovacuum sees a temporary table: without its statistics the planner takes
        # it for a few rows, and nests loops over it
        self.engine.execute_compiled(f'ANALYZE "{name}"')
        return self.con.table(name)

    def map_value(self, column: str, key: str) -> str:
        """SQL for the text value of `key` in a map column (labels, tags), NULL if absent."""
        return self.engine.map_value(column, key)

    @contextmanager
    def reading_into(self, stage: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection in which a file reader fills `stage` (a stage of this store)
        set at a time (`sources.bills.engine.stage_bill`): this store's own on DuckDB; on
        PostgreSQL a DuckDB in memory, whose rows are copied into the stage when the block
        ends."""
        if isinstance(self.engine, DuckDB):
            yield self.con.con
            return
        scratch = duckdb.connect(":memory:")
        try:
            schema = self.table(stage).schema().to_pyarrow()
            cols = ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in schema)
            scratch.execute(f'CREATE TABLE "{stage}" ({cols})')
            yield scratch
            reader = scratch.sql(f'SELECT * FROM "{stage}"').to_arrow_reader(500_000)
            for batch in reader:
                self.insert_arrow(stage, pa.Table.from_batches([batch]))
        finally:
            scratch.close()

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
        return self.engine.fetch_arrow(expr)

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
        """Append an Arrow table whose columns are a subset of the target's (in bulk: on
        PostgreSQL through COPY)."""
        if data.num_rows == 0:
            return 0
        return self.engine.append(table, data)

    def attached(self, name: str, data: pa.Table) -> AbstractContextManager[str]:
        """`data` readable by SQL as `name` within the block."""
        return self.engine.attached(name, data)

    def upsert_arrow(self, table: str, data: pa.Table, key: str) -> int:
        """Replace rows with the same key, then insert: re-ingest never duplicates."""
        if data.num_rows == 0:
            return 0
        with self.attached(f"_incoming_{table}", data) as view:
            self.raw(f'DELETE FROM "{table}" WHERE "{key}" IN (SELECT "{key}" FROM "{view}")')
            cols = ", ".join(f'"{c}"' for c in data.column_names)
            self.raw(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM "{view}"')
        return data.num_rows

    def delete_keys(self, table: str, data: pa.Table, keys: Sequence[str]) -> None:
        """Delete the rows of `table` whose `keys` equal those of a row of `data`."""
        if data.num_rows == 0:
            return
        with self.attached(f"_keys_{table}", data.select(list(keys))) as view:
            match = " AND ".join(f't."{k}" = k."{k}"' for k in keys)
            self.raw(f'DELETE FROM "{table}" t USING "{view}" k WHERE {match}')

    # -- GPU samples --------------------------------------------------------------------
    def write_usage(self, data: pa.Table) -> int:
        """Append `gpu_usage` rows and their per-node roll-up (`node_presence`)."""
        if data.num_rows == 0:
            return 0
        rows = self.insert_arrow("gpu_usage", data)
        incoming = data.select(["node_id", "ts_ms", "held_req"])
        with self.attached("_incoming_presence", incoming) as view:
            self.raw(
                "INSERT INTO node_presence SELECT node_id, ts_ms, sum(held_req) "
                f'FROM "{view}" GROUP BY node_id, ts_ms'
            )
        rollups.add_usage_arrow(self, data)
        return rows

    def stage(self, prefix: str, schema: pa.Schema) -> str:
        """A temporary table shaped like `schema`, to collect a long read in parts."""
        Store._stages += 1
        name = f"_stage_{prefix}_{Store._stages}"
        # DDL from the Arrow types: building an empty Arrow table from Python makes pyarrow
        # import pandas (seconds, cold)
        cols = ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in schema)
        self.raw(f'CREATE TEMP TABLE "{name}" ({cols})')
        self._tables.pop(name, None)
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
        self.engine.temp_values(name, columns, data)
        self._tables.pop(name, None)
        return name

    def stage_append(self, name: str, data: pa.Table) -> int:
        return self.insert_arrow(name, data)

    def drop_stage(self, name: str) -> None:
        self.raw(f'DROP TABLE IF EXISTS "{name}"')
        self._tables.pop(name, None)

    def write_usage_from(self, stage: str) -> int:
        """Append staged `gpu_usage` rows and their roll-up."""
        cols = "ts_ms, node_id, gpu_id, workload_id, held_req, held_use, used"
        self.raw(f'INSERT INTO gpu_usage ({cols}) SELECT {cols} FROM "{stage}"')
        self.raw(
            "INSERT INTO node_presence SELECT node_id, ts_ms, sum(held_req) "
            f'FROM "{stage}" GROUP BY node_id, ts_ms'
        )
        rollups.add_usage(self, f'"{stage}"')
        return self.count(stage)

    def delete_usage(self, node_ids: Sequence[str], start_ms: int, end_ms: int) -> None:
        """Drop the samples of these nodes in [start, end), with their roll-ups."""
        if not node_ids:
            return
        rollups.remove_usage(self, node_ids, start_ms, end_ms)
        for table in ("gpu_usage", "node_presence"):
            self.raw(
                f"DELETE FROM {table} WHERE node_id IN (SELECT unnest(CAST(? AS VARCHAR[]))) "
                "AND ts_ms >= ? AND ts_ms < ?",
                [list(node_ids), start_ms, end_ms],
            )

    def count(self, table: str) -> int:
        rows = self.raw(f'SELECT count(*) FROM "{table}"')
        return int(rows[0][0]) if rows else 0

    def table_bytes(self, table: str) -> int | None:
        """The space a table takes in the store, in bytes, as the engine reports it (DuckDB:
        its blocks on disk, None for a store in memory; PostgreSQL: the table with its
        indexes and TOAST)."""
        return self.engine.table_bytes(table)

    def tables(self) -> list[str]:
        """The store's own tables, by name."""
        return self.engine.tables()

    def scan(
        self, table: str, columns: Sequence[str], batch_rows: int = 500_000
    ) -> Iterator[pa.Table]:
        """A whole table's `columns`, in Arrow parts."""
        return self.engine.scan(table, columns, batch_rows)

    def restart_sequence(self, name: str, after: int) -> None:
        self.engine.restart_sequence(name, after)

    def reclaim(self) -> None:
        """Give the space of deleted rows back (DuckDB CHECKPOINT, PostgreSQL VACUUM)."""
        self.engine.reclaim()
