"""The engines a store runs on: DuckDB (a file, the default) and PostgreSQL (a server).

Everything that differs between the two lives here, and only here:
- connecting (a DuckDB file, with its single-writer lock; a PostgreSQL URL, with an
  optional `schema=` of ours);
- the SQL dialect: the store's own statements are written once, in DuckDB's dialect, and
  each is translated for PostgreSQL by sqlglot (the SQL compiler Ibis itself uses), once
  per statement text; `MAP(VARCHAR, VARCHAR)` (labels, tags) becomes `jsonb`, which is how
  Ibis's PostgreSQL compiler reads and writes a map, and which the store's tables give
  Ibis as maps;
- moving Arrow tables in and out in bulk: DuckDB scans an Arrow table in place, PostgreSQL
  gets CSV through `COPY ... FROM STDIN` and answers reads through `COPY ... TO STDOUT`,
  which pyarrow parses with the expression's types (exact decimals, never floats);
- what the engine says about itself: whether a table exists, how many bytes it takes.
"""

from __future__ import annotations

import functools
import io
import json
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import ibis
import pyarrow as pa
import sqlglot
import sqlglot.expressions as sge

from aifinops.arrow_sql import sql_type
from aifinops.core.store_url import is_postgres, redact

__all__ = ["DuckDB", "Engine", "PostgreSQL", "is_postgres", "redact"]
from aifinops.errors import StoreError

_PARAM = "__aifinops_param__"


class Engine(ABC):
    """One connection to one engine. `con` is the Ibis backend on it. Each engine gives
    every operation below; `Store` calls nothing else of it."""

    name: str
    con: Any

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one of the store's statements (DuckDB's dialect, `?` parameters); its rows."""

    @abstractmethod
    def fetch_arrow(self, expr: ibis.Expr) -> pa.Table:
        """Run an Ibis expression; its result as Arrow, typed as the expression says."""

    @abstractmethod
    def attached(self, name: str, data: pa.Table) -> AbstractContextManager[str]:
        """Make `data` readable by SQL as `name` for the block."""

    @abstractmethod
    def append(self, table: str, data: pa.Table) -> int:
        """Append an Arrow table whose columns are a subset of `table`'s, in bulk."""

    @abstractmethod
    def temp_values(
        self, name: str, columns: Sequence[tuple[str, str]], data: Sequence[Sequence[Any]]
    ) -> None:
        """A temporary table `name` of `columns` (name, SQL type) holding `data`."""

    @abstractmethod
    def table_exists(self, name: str) -> bool:
        """Whether the store has this table."""

    @abstractmethod
    def map_value(self, column: str, key: str) -> str:
        """SQL for the text value of `key` in the map `column`, NULL where it has none."""

    @abstractmethod
    def tables(self) -> list[str]:
        """The store's own tables (not temporary ones), by name."""

    @abstractmethod
    def scan(self, table: str, columns: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
        """A whole table's columns, in Arrow parts of at most `batch_rows` rows."""

    @abstractmethod
    def restart_sequence(self, name: str, after: int) -> None:
        """Make the sequence's next value `after + 1` (a store copied in)."""

    @abstractmethod
    def table_bytes(self, name: str) -> int | None:
        """The bytes a table takes, as the engine reports them (None: it cannot say)."""

    @abstractmethod
    def reclaim(self) -> None:
        """Give back the space of deleted rows (DuckDB CHECKPOINT, PostgreSQL VACUUM)."""

    def close(self) -> None:
        self.con.disconnect()


# -- DuckDB ------------------------------------------------------------------------------


class DuckDB(Engine):
    name = "duckdb"

    def __init__(self, path: str, *, read_only: bool, lock_wait: float):
        import duckdb

        self.path = path
        deadline, pause = time.monotonic() + lock_wait, 0.05
        while True:
            try:
                self.con = ibis.duckdb.connect(path, read_only=read_only)
                return
            except duckdb.IOException as exc:
                # DuckDB has no error class of its own for a lock held elsewhere; its
                # message is the one way to tell it from a missing or unreadable file
                if "could not set lock" not in str(exc).lower():
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(
                        "another aifinops process is writing to the store (collect, an ingest)"
                        if read_only
                        else "another aifinops process has the store open (collect, an "
                        "ingest, or a read)",
                        where=path,
                        hint=f"tried for {lock_wait:g} s; run the command again when it is "
                        "done (collect holds the store only while a run writes), or give "
                        "another store with --db",
                    ) from exc
                time.sleep(min(pause, left))
                pause = min(pause * 2, 1.0)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        duck = self.con.con
        result = duck.execute(sql, params) if params is not None else duck.execute(sql)
        try:
            return list(result.fetchall())
        except Exception:  # statements without a result set
            return []

    def fetch_arrow(self, expr: ibis.Expr) -> pa.Table:
        from ibis.formats.pyarrow import PyArrowData

        table = expr.as_table()
        # what `to_pyarrow` does first: register the memtables (and UDFs) it refers to
        self.con._run_pre_execute_hooks(table)
        result = self.con.con.sql(self.con.compile(table)).to_arrow_table()
        return PyArrowData.convert_table(result, table.schema())

    @contextmanager
    def attached(self, name: str, data: pa.Table) -> Iterator[str]:
        duck = self.con.con
        duck.register(name, data)
        try:
            yield name
        finally:
            duck.unregister(name)

    def append(self, table: str, data: pa.Table) -> int:
        with self.attached(f"_incoming_{table}", data) as view:
            cols = ", ".join(f'"{c}"' for c in data.column_names)
            self.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM "{view}"')
        return data.num_rows

    def temp_values(
        self, name: str, columns: Sequence[tuple[str, str]], data: Sequence[Sequence[Any]]
    ) -> None:
        # built by DuckDB from lists: an Ibis memtable builds Arrow from Python objects,
        # and pyarrow imports pandas for that (a second, cold). A DECIMAL column is given
        # its values as text, so they are kept exactly
        selects, params = [], []
        for i, ((column, kind), values) in enumerate(zip(columns, data, strict=True), 1):
            if kind.upper().startswith("DECIMAL"):
                selects.append(f'CAST(unnest(CAST(${i} AS VARCHAR[])) AS {kind}) AS "{column}"')
                params.append([None if v is None else format(v, "f") for v in values])
            else:
                selects.append(f'CAST(unnest(CAST(${i} AS {kind}[])) AS {kind}) AS "{column}"')
                params.append(list(values))
        self.execute(f'CREATE TEMP TABLE "{name}" AS SELECT {", ".join(selects)}', params)

    def table_exists(self, name: str) -> bool:
        return bool(
            self.execute(
                "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
                [name],
            )
        )

    def map_value(self, column: str, key: str) -> str:
        return f'"{column}"[{_quote(key)}]'

    def table_bytes(self, name: str) -> int | None:
        if self.path == ":memory:":
            return None
        rows = self.execute(
            "SELECT count(DISTINCT block_id) FROM pragma_storage_info(?) WHERE persistent",
            [name],
        )
        size = self.execute("SELECT block_size FROM pragma_database_size()")
        return int(rows[0][0]) * int(size[0][0]) if rows and size else None

    def reclaim(self) -> None:
        self.execute("CHECKPOINT")

    def tables(self) -> list[str]:
        return [
            r[0]
            for r in self.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                "AND NOT temporary ORDER BY 1"
            )
        ]

    def scan(self, table: str, columns: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
        cols = ", ".join(f'"{c}"' for c in columns)
        reader = self.con.con.sql(f'SELECT {cols} FROM "{table}"').to_arrow_reader(batch_rows)
        for batch in reader:
            yield pa.Table.from_batches([batch])

    def restart_sequence(self, name: str, after: int) -> None:
        # DuckDB sets no sequence's value: it is made again, to start after `after`
        self.execute(f"DROP SEQUENCE IF EXISTS {name}")
        self.execute(f"CREATE SEQUENCE {name} START {int(after) + 1}")


# -- PostgreSQL --------------------------------------------------------------------------


def _pg_node(node: sge.Expression) -> sge.Expression:
    if isinstance(node, sge.IntDiv):  # DuckDB's `//`: floor division, an integer
        exact = sge.Div(this=sge.cast(node.this, "DECIMAL"), expression=node.expression)
        return sge.cast(sge.Floor(this=exact), "BIGINT")
    if isinstance(node, sge.DataType) and node.this == sge.DataType.Type.MAP:
        return sge.DataType(this=sge.DataType.Type.JSONB)
    if isinstance(node, sge.Placeholder):
        return sge.column(_PARAM)
    return node


@functools.lru_cache(maxsize=4096)
def to_postgres(sql: str) -> tuple[str, bool]:
    """A statement of the store (DuckDB's dialect, `?` parameters) in PostgreSQL's, with
    psycopg's `%s` parameters; and whether it has any (then a literal `%` is doubled)."""
    out = []
    for tree in sqlglot.parse(sql, read="duckdb"):
        if tree is not None:
            out.append(tree.transform(_pg_node).sql(dialect="postgres"))
    text = "; ".join(out)
    if _PARAM not in text:
        return text, False
    return text.replace("%", "%%").replace(_PARAM, "%s"), True


def _pg_type(t: pa.DataType) -> str:
    if pa.types.is_map(t):
        return "JSONB"
    if pa.types.is_null(t):  # a column of no values
        return "TEXT"
    return _pg_type_of_sql(sql_type(t))


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(dict(value.items() if isinstance(value, dict) else value))


def _array_text(values: Any) -> str | None:
    if values is None:
        return None

    def item(v: Any) -> str:
        if v is None:
            return "NULL"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(item(v) for v in values) + "}"


def _csv_ready(data: pa.Table) -> pa.Table:
    """Columns CSV cannot carry as they are: maps become JSON text, lists array literals."""
    for i, field in enumerate(data.schema):
        if pa.types.is_map(field.type):
            text = pa.array([_json_text(v) for v in data.column(i).to_pylist()], pa.string())
            data = data.set_column(i, field.name, text)
        elif pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            text = pa.array([_array_text(v) for v in data.column(i).to_pylist()], pa.string())
            data = data.set_column(i, field.name, text)
    return data


# the session settings an analytical reader needs where the server keeps PostgreSQL's
# defaults, which suit many small transactions: 4 MB of work_mem makes the allocation's
# groupings of a year's roll-ups spill to disk (a 1.1 M-row grouping: 3.8 s, against 2.4 s
# in memory), and JIT compiles each of its statements again (about 0.1 s each); 8 MB of
# temp_buffers writes its temporary tables of a year's jobs out to the disk. Merge joins
# are turned off: the planner takes a running sum's order for a reason to sort the year's
# 107 k jobs twice to merge them (0.4 s) where hashing them takes a tenth of that; the
# joins of allocation are all equalities or ranges (those by an index), which hash joins
# and nested loops serve. A value the connection set itself (the URL's `options=-c ...`
# or PGOPTIONS) is kept, and so is a larger work_mem or temp_buffers from the server's
# configuration (docs/decisions/0022).
SESSION_WORK_MEM_KB = 256 * 1024
SESSION_TEMP_BUFFERS_KB = 256 * 1024
SESSION_SETTINGS = """
SELECT name, setting, source, unit FROM pg_settings
WHERE name IN ('work_mem', 'temp_buffers', 'jit', 'enable_mergejoin')
"""
UNIT_KB = {"kB": 1, "8kB": 8, "MB": 1024}


def _tune_session(cur: Any) -> None:
    for name, setting, source, unit in cur.execute(SESSION_SETTINGS).fetchall():
        if source in ("client", "session", "user", "database"):
            continue  # chosen by whoever runs the store: theirs stands
        kb = int(setting) * UNIT_KB.get(unit, 1) if unit else 0
        if name == "work_mem" and kb < SESSION_WORK_MEM_KB:
            cur.execute(f"SET work_mem = '{SESSION_WORK_MEM_KB}kB'")
        elif name == "temp_buffers" and kb < SESSION_TEMP_BUFFERS_KB:
            cur.execute(f"SET temp_buffers = '{SESSION_TEMP_BUFFERS_KB}kB'")
        elif name in ("jit", "enable_mergejoin") and setting == "on":
            cur.execute(f"SET {name} = off")


class PostgreSQL(Engine):
    name = "postgresql"

    def __init__(self, url: str):
        import psycopg

        self.url = url
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in query if k == "schema"), None)
        conninfo = urllib.parse.urlunsplit(
            parts._replace(
                scheme="postgresql",
                # %20, not +, for a space: libpq reads a URI's query with percent codes only
                query=urllib.parse.urlencode(
                    [(k, v) for k, v in query if k != "schema"], quote_via=urllib.parse.quote
                ),
            )
        )
        try:
            raw = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL: {str(exc).strip()}",
                where=redact(url),
                hint="check the URL given by --db or AIFINOPS_DB "
                "(postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME]) and that "
                "the server runs and lets this user in",
            ) from exc
        with raw.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            _tune_session(cur)
            if schema:
                ident = psycopg.sql.Identifier(schema)
                cur.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                cur.execute(psycopg.sql.SQL("SET search_path TO {}, public").format(ident))
        self.schema = schema
        self.con = ibis.postgres.from_connection(raw)
        # every jsonb column of the store is a map of text (labels, tags): Ibis is told so
        # when it asks for a table's columns, and then compiles `labels[key]` for jsonb
        found = self.con.get_schema

        def get_schema(name: str, **kwargs: Any) -> Any:
            import ibis.expr.datatypes as dt
            import ibis.expr.schema as sch

            text = dt.Map(dt.string, dt.string)
            return sch.Schema(
                {k: text if isinstance(v, dt.JSON) else v for k, v in found(name, **kwargs).items()}
            )

        self.con.get_schema = get_schema

    @property
    def raw(self) -> Any:
        return self.con.con

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        from psycopg.types.json import JsonbLoader

        text, takes = to_postgres(sql)
        with self.raw.cursor() as cur:
            cur.adapters.register_loader("jsonb", JsonbLoader)  # a map, as DuckDB gives it
            cur.execute(text, list(params) if takes and params is not None else None)
            if cur.description is None:
                return []
            return list(cur.fetchall())

    def prepare(self) -> None:
        """What Ibis's PostgreSQL SQL needs of the database: the aggregates `first` and
        `last` (of the non-null values, in the aggregate's order), made once per database."""
        with self.raw.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' AND p.proname IN ('first', 'last') AND p.prokind = 'a'"
            )
            row = cur.fetchone()
            if row and row[0] == 2:
                return
            for name, pick in (("first", "$1"), ("last", "$2")):
                cur.execute(
                    f"CREATE OR REPLACE FUNCTION public.aifinops_{name}_of(anyelement, anyelement) "
                    f"RETURNS anyelement LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS "
                    f"'SELECT {pick}'"
                )
                cur.execute(
                    f"CREATE OR REPLACE AGGREGATE public.{name}(anyelement) "
                    f"(SFUNC = public.aifinops_{name}_of, STYPE = anyelement, PARALLEL = SAFE)"
                )

    @contextmanager
    def migrating(self) -> Iterator[None]:
        """One process at a time migrates a schema: two replicas starting on a new one
        would both create its tables. The lock is the session's, held for the block."""
        with self.raw.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext('aifinops:' || current_schema()))")
        try:
            yield
        finally:
            with self.raw.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(hashtext('aifinops:' || current_schema()))")

    def execute_compiled(self, sql: str) -> None:
        """Run SQL already in PostgreSQL's dialect (Ibis compiled it)."""
        with self.raw.cursor() as cur:
            cur.execute(sql)

    def fetch_arrow(self, expr: ibis.Expr) -> pa.Table:
        table = expr.as_table()
        self.con._run_pre_execute_hooks(table)
        schema = table.schema().to_pyarrow()
        sql = self.con.compile(table)
        if any(pa.types.is_map(f.type) or pa.types.is_nested(f.type) for f in schema):
            with self.raw.cursor() as cur:
                rows = cur.execute(sql).fetchall()
            columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
            return pa.table(
                [_pg_column(c, f.type) for c, f in zip(columns, schema, strict=True)],
                schema=schema,
            )
        return self._copy_out(sql, schema)

    def _copy_out(self, sql: str, schema: pa.Schema) -> pa.Table:
        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        with self.raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
            for chunk in copy:
                buffer.write(chunk)
        if not buffer.tell():
            return schema.empty_table()
        types = {}
        for f in schema:
            t = f.type
            types[f.name] = pa.string() if pa.types.is_timestamp(t) or pa.types.is_boolean(t) else t
        table = pacsv.read_csv(
            io.BytesIO(buffer.getvalue()),
            read_options=pacsv.ReadOptions(column_names=schema.names),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                null_values=[""],
                true_values=["t"],
                false_values=["f"],
            ),
        )
        columns = []
        for f, column in zip(schema, table.columns, strict=True):
            if pa.types.is_boolean(f.type):
                column = pa.array([None if v is None else v == "t" for v in column.to_pylist()])
            elif pa.types.is_timestamp(f.type):
                column = column.cast(pa.timestamp(f.type.unit, f.type.tz))
            columns.append(column.cast(f.type))
        return pa.table(columns, schema=schema)

    def _copy_in(self, table: str, data: pa.Table) -> None:
        import pyarrow.csv as pacsv

        data = _csv_ready(data)
        buffer = io.BytesIO()
        pacsv.write_csv(
            data, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed")
        )
        cols = ", ".join(f'"{c}"' for c in data.column_names)
        with (
            self.raw.cursor() as cur,
            cur.copy(f'COPY "{table}" ({cols}) FROM STDIN (FORMAT csv)') as copy,
        ):
            copy.write(buffer.getvalue())

    @contextmanager
    def attached(self, name: str, data: pa.Table) -> Iterator[str]:
        cols = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in data.schema)
        with self.raw.cursor() as cur:
            cur.execute(f'CREATE TEMP TABLE "{name}" ({cols})')
        try:
            self._copy_in(name, data)
            yield name
        finally:
            with self.raw.cursor() as cur:
                cur.execute(f'DROP TABLE IF EXISTS "{name}"')

    def append(self, table: str, data: pa.Table) -> int:
        self._copy_in(table, data)
        return data.num_rows

    def temp_values(
        self, name: str, columns: Sequence[tuple[str, str]], data: Sequence[Sequence[Any]]
    ) -> None:
        selects, params = [], []
        for (column, kind), values in zip(columns, data, strict=True):
            pg = _pg_type_of_sql(kind)
            selects.append(f'CAST(unnest(CAST(%s AS TEXT[])) AS {pg}) AS "{column}"')
            params.append([None if v is None else _text(v) for v in values])
        with self.raw.cursor() as cur:
            cur.execute(f'CREATE TEMP TABLE "{name}" AS SELECT {", ".join(selects)}', params)

    def table_exists(self, name: str) -> bool:
        with self.raw.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{name}"'])
            row = cur.fetchone()
        return bool(row and row[0])

    def map_value(self, column: str, key: str) -> str:
        return f'jsonb_extract_path_text("{column}", {_quote(key)})'

    def table_bytes(self, name: str) -> int | None:
        with self.raw.cursor() as cur:
            cur.execute("SELECT pg_total_relation_size(to_regclass(%s))", [f'"{name}"'])
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def reclaim(self) -> None:
        with self.raw.cursor() as cur:
            cur.execute("VACUUM ANALYZE")

    def tables(self) -> list[str]:
        with self.raw.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
            )
            return [r[0] for r in cur.fetchall()]

    def scan(self, table: str, columns: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
        t = self.con.table(table).select(*columns)
        yield self.fetch_arrow(t)

    def restart_sequence(self, name: str, after: int) -> None:
        with self.raw.cursor() as cur:
            cur.execute("SELECT setval(%s, %s, true)", [name, max(int(after), 1)])


def _pg_column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    if pa.types.is_map(kind):  # jsonb, as a dict or (by Ibis's loader) as its text
        values = [json.loads(v) if isinstance(v, str) else v for v in values]
    return pa.array(list(values), kind)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pg_type_of_sql(kind: str) -> str:
    """A DuckDB type's PostgreSQL name (DOUBLE -> DOUBLE PRECISION, VARCHAR -> TEXT)."""
    return sqlglot.transpile(f"CAST(x AS {kind})", read="duckdb", write="postgres")[0][
        len("CAST(x AS ") : -1
    ]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | int):
        return repr(value)
    try:
        return format(value, "f")
    except (TypeError, ValueError):
        return str(value)
