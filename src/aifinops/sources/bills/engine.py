"""Bills -> FOCUS-shaped cost lines: one streaming conversion, run in an in-memory DuckDB.

Each bill format (FOCUS, AWS CUR, Azure, OCI: `focus.py`, `cur.py`, `azure.py`, `oci.py`)
says, as SQL over the file's own columns, how to compute each cost-line column; this module
reads the file (CSV, gzipped CSV or Parquet) in a streaming scan, runs those expressions set
at a time and yields Arrow batches of `COST_LINES` (`read_bill`), or writes them into a
stage table on the caller's DuckDB connection (`stage_bill`: an ingest's lines go from the
file to the store without leaving DuckDB). Rows cut short are reported by line
number (DuckDB's rejects table); rows whose cost, currency or period cannot be read, and
rows with an amount beyond MAX_AMOUNT, are skipped and reported by line number too (found by
their line hash in a second pass, made only when there are such rows; a Parquet file's by row
number); a read holds nothing in memory but the batch in hand. The text encoding is told from
the file's start (`diagnose.py`, which also says, by line, why a file DuckDB cannot read is
unreadable).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from aifinops.arrow_sql import sql_type
from aifinops.errors import InputError

MONEY = pa.decimal128(38, 12)
TAGS = pa.map_(pa.string(), pa.string())
COST_LINES = pa.schema(
    [
        ("provider", pa.string()),
        ("billing_account_id", pa.string()),
        ("billing_account_name", pa.string()),
        ("sub_account_id", pa.string()),
        ("sub_account_name", pa.string()),
        ("billing_currency", pa.string()),
        ("billing_period_start_ms", pa.int64()),
        ("billing_period_end_ms", pa.int64()),
        ("charge_period_start_ms", pa.int64()),
        ("charge_period_end_ms", pa.int64()),
        ("charge_category", pa.string()),
        ("charge_class", pa.string()),
        ("charge_description", pa.string()),
        ("service_name", pa.string()),
        ("service_category", pa.string()),
        ("region_id", pa.string()),
        ("resource_id", pa.string()),
        ("resource_name", pa.string()),
        ("resource_type", pa.string()),
        ("sku_id", pa.string()),
        ("pricing_category", pa.string()),
        ("pricing_unit", pa.string()),
        ("pricing_quantity", MONEY),
        ("consumed_quantity", MONEY),
        ("consumed_unit", pa.string()),
        ("billed_cost", MONEY),
        ("effective_cost", MONEY),
        ("list_cost", MONEY),
        ("contracted_cost", MONEY),
        ("commitment_discount_id", pa.string()),
        ("tags", TAGS),
        ("line_hash", pa.string()),
        ("source", pa.string()),
        ("line_id", pa.string()),  # the provider's own line id, where the file has one
    ]
)
# a delivery's stage (`stage_bill`): the cost lines, and why a line is to be skipped (the
# first amount out of range, the problem); columns named with `_` are not stored
STAGED = COST_LINES.append(pa.field("_too_large", pa.string())).append(
    pa.field("_problem", pa.string())
)
_REJECTS = ["bill_rejects", "bill_reject_scans"]  # DuckDB's tables of the lines it rejected
# the columns a line cannot do without: a line missing one is reported and skipped
REQUIRED = {
    "billed_cost": "cost",
    "billing_currency": "currency",
    "charge_period_start_ms": "charge period start",
}
DAY_MS = 86_400_000
# the largest amount (cost, rate or quantity) one line may carry, in magnitude: ten to the
# fifteenth. DECIMAL(38, 12) holds up to 10**26, but a line near that makes every sum over
# the store overflow (and so `bills summary`, `tags report`, a re-delivery); a line under
# 10**15 leaves room for 10**11 such lines in a sum
MAX_AMOUNT = 10**15


@dataclass
class BillRead:
    """What one read found: lines read, problems (by line where known)."""

    rows: int = 0
    skipped: int = 0
    short: int = 0  # lines with fewer fields than the header
    # lines skipped for what they hold (an amount beyond MAX_AMOUNT, no readable cost, ...):
    # (line hash, what is wrong); their line numbers are found after the scan
    unplaced: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


class Header:
    """A file's column names and types, found exactly, then case-insensitively, then by the
    name in brackets (`Maßeinheit (UnitOfMeasure)`, as localised Azure exports write)."""

    def __init__(self, columns: list[tuple[str, str]]):
        self.names = [c for c, _ in columns]
        self.types = dict(columns)
        self._folded: dict[str, str] = {}
        for name in self.names:
            for key in (name, *re.findall(r"\(([^()]+)\)\s*$", name)):
                self._folded.setdefault(key.strip().lower(), name)

    def find(self, *candidates: str) -> str | None:
        for c in candidates:
            if c in self.types:
                return c
        for c in candidates:
            hit = self._folded.get(c.lower())
            if hit:
                return hit
        return None

    def has(self, *candidates: str) -> bool:
        return self.find(*candidates) is not None

    def col(self, *candidates: str) -> str:
        """The quoted column, or NULL where the file has none of the names."""
        found = self.find(*candidates)
        return quote(found) if found else "NULL"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str | None) -> str:
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


_AMOUNTS: ContextVar[list[str] | None] = ContextVar("bill_amounts", default=None)


def money(expr: str) -> str:
    """Exact money, DECIMAL(38, 12). Amounts under a million parse on the 64-bit decimal path
    (twice as fast as the 128-bit one); the rest fall through to the wide cast. The engine
    checks every expression given here against MAX_AMOUNT (`_amounts_checked`)."""
    seen = _AMOUNTS.get()
    if seen is not None and expr != "NULL" and expr not in seen:
        seen.append(expr)
    return (
        f"CAST(coalesce(TRY_CAST({expr} AS DECIMAL(18, 12)), TRY_CAST({expr} AS DECIMAL(38, 12)))"
        " AS DECIMAL(38, 12))"
    )


def ms(expr: str, formats: tuple[str, ...] = ()) -> str:
    """Epoch milliseconds of a timestamp text (ISO 8601; naive means UTC), or of `formats`."""
    if formats:
        fmts = ", ".join(literal(f) for f in formats)
        return (
            f"epoch_ms(coalesce(TRY_CAST({expr} AS TIMESTAMPTZ), "
            f"TRY_STRPTIME(CAST({expr} AS VARCHAR), [{fmts}])::TIMESTAMPTZ))"
        )
    return f"epoch_ms(TRY_CAST({expr} AS TIMESTAMPTZ))"


def case(expr: str, mapping: dict[str, str], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {literal(k)} THEN {literal(v)}" for k, v in mapping.items())
    return f"CASE {expr} {whens} ELSE {default} END"


def json_tags(expr: str) -> str:
    """A JSON object (braces optional, as some Azure exports write it) as a tag map."""
    body = f"trim(CAST({expr} AS VARCHAR))"
    fixed = f"CASE WHEN {body} LIKE '{{%' THEN {body} ELSE '{{' || {body} || '}}' END"
    return (
        f"CASE WHEN {expr} IS NULL OR {body} = '' THEN NULL "
        f"ELSE TRY_CAST(TRY_CAST({fixed} AS JSON) AS MAP(VARCHAR, VARCHAR)) END"
    )


def column_tags(header: Header, prefixes: tuple[str, ...]) -> str:
    """Tags kept one per column (`resourceTags/user:team`, `tags/Oracle-Tags.CreatedBy`)."""
    pairs = []
    for name in header.names:
        for prefix in prefixes:
            if name.startswith(prefix) and len(name) > len(prefix):
                key = name[len(prefix) :]
                pairs.append(f"{{'k': {literal(key)}, 'v': {quote(name)}}}")
                break
    if not pairs:
        return "NULL"
    entries = f"list_filter([{', '.join(pairs)}], lambda e: e.v IS NOT NULL AND e.v <> '')"
    return f"CASE WHEN len({entries}) = 0 THEN NULL ELSE map_from_entries({entries}) END"


@cache
def lookup(name: str) -> list[dict[str, str]]:
    """A bundled lookup table (`aifinops/data/billing/NAME.csv`)."""
    text = resources.files("aifinops.data").joinpath("billing", f"{name}.csv").read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


@dataclass(frozen=True)
class BillFormat:
    """One bill format: its name, how to recognise its header, and its column expressions."""

    name: str
    title: str
    recognise: Callable[[Header], bool]
    expressions: Callable[[Header, dict[str, Any]], dict[str, str]]
    # extra lookup tables the expressions join to: name -> (CSV rows, join SQL)
    joins: Callable[[Header], list[tuple[str, list[dict[str, str]], str]]] = lambda h: []
    # the columns by which the provider identifies a line (each a tuple of spellings); where
    # a file has them, a repeated line is one equal in those and in every column we read
    identity: tuple[tuple[str, ...], ...] = ()


FORMATS: dict[str, BillFormat] = {}


def register(fmt: BillFormat) -> BillFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def _connect() -> Any:
    import duckdb

    con = duckdb.connect(config={"memory_limit": "1GB"})
    con.execute("SET TimeZone = 'UTC'")  # a timestamp without an offset is UTC
    con.execute("SET enable_progress_bar = false")  # the caller shows its own progress
    # the order of a bill's lines carries nothing; unordered, the scan runs freely parallel
    con.execute("SET preserve_insertion_order = false")
    return con


def _source(path: Path, pad: bool = False, encoding: str = "utf-8") -> str:
    """The scan of a bill file. `pad`: a line with fewer fields than the header is read with
    the missing trailing fields empty (exports that drop trailing empties) instead of being
    skipped as cut short. `encoding`: the CSV's (`diagnose.bill_encoding`)."""
    name = literal(str(path))
    lower = path.name.lower()
    if lower.endswith(".parquet"):
        return f"read_parquet({name})"
    return (
        f"read_csv({name}, header = true, all_varchar = true, delim = ',', quote = '\"', "
        f"escape = '\"', nullstr = ['', 'NULL'], store_rejects = true, "
        f"rejects_table = '{_REJECTS[0]}', rejects_scan = '{_REJECTS[1]}'"
        f"{', null_padding = true' if pad else ''}"
        f"{f', encoding = {literal(encoding)}' if encoding != 'utf-8' else ''})"
    )


def header_of(path: Path, con: Any = None, encoding: str | None = None) -> Header:
    from aifinops.sources.bills.diagnose import bill_encoding, unreadable

    if not path.is_file():
        from aifinops.sources.inputs import unreadable as no_file

        raise no_file(path, FileNotFoundError() if not path.exists() else IsADirectoryError())
    if path.stat().st_size == 0:
        raise InputError("empty file", where=str(path))
    encoding = encoding or bill_encoding(path)
    own = con is None
    con = _connect() if own else con
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {_source(path, encoding=encoding)}").fetchall()
    except Exception as error:  # duckdb.Error: unreadable, not CSV, not Parquet
        raise unreadable(path, error, encoding) from error
    finally:
        if own:
            con.close()
    return Header([(r[0], str(r[1])) for r in rows])


def formats() -> dict[str, BillFormat]:
    """Every bill format, by name (the modules register themselves on import)."""
    from aifinops.sources.bills import azure, cur, focus, oci  # noqa: F401

    return FORMATS


def detect(header: Header) -> BillFormat | None:
    return next((f for f in formats().values() if f.recognise(header)), None)


def read_bill(
    path: Path,
    fmt: BillFormat,
    *,
    options: dict[str, Any] | None = None,
    batch_rows: int = 100_000,
    read: BillRead | None = None,
) -> Iterator[pa.Table]:
    """Batches of cost lines from one bill file; problems are collected in `read`."""
    state = read if read is not None else BillRead()
    con = _connect()
    try:
        scan = _prepare(con, path, fmt, options or {}, state)
        try:
            reader = con.sql(scan.sql).to_arrow_reader(batch_rows)
            for batch in reader:
                yield _keep(pa.Table.from_batches([batch]), state)
        except InputError:
            raise
        except Exception as error:  # duckdb.Error mid-scan: a broken file
            raise scan.unreadable(error) from error
        _finish(con, path, state, scan)
    finally:
        con.close()


def stage_bill(
    con: Any,
    path: Path,
    fmt: BillFormat,
    table: str,
    *,
    options: dict[str, Any] | None = None,
    read: BillRead | None = None,
) -> int:
    """Convert one bill file into `table`, a table shaped as STAGED on `con`, the caller's
    DuckDB connection (the store's stage): the lines go from the file to the table in one
    statement and never leave DuckDB, where handing Arrow batches from our connection to
    the caller's cost as much again as the conversion. Lines skipped for what they hold are
    reported in `read` and removed from the table. Returns the lines kept."""
    state, temporary = read if read is not None else BillRead(), list(_REJECTS)
    with _session(con):
        try:
            scan = _prepare(con, path, fmt, options or {}, state)
            temporary = scan.temporary
            try:
                added = con.execute(f"INSERT INTO {quote(table)} BY NAME {scan.sql}").fetchone()
            except Exception as error:  # duckdb.Error mid-scan: a broken file
                raise scan.unreadable(error) from error
            kept = int(added[0]) - _skip_staged(con, table, state)
            state.rows += kept
            _finish(con, path, state, scan)
        finally:  # the connection is the caller's: leave nothing of ours on it
            for name in temporary:
                con.execute(f"DROP TABLE IF EXISTS {quote(name)}")
    return kept


@dataclass(frozen=True)
class _Scan:
    """One bill file's conversion, ready to run: its SQL (the COST_LINES columns, then
    `_too_large` and `_problem`), the SQL and header positions of its line hash's parts, and
    the temporary tables it makes on the connection."""

    path: Path
    sql: str
    key: str
    key_columns: list[int]
    encoding: str
    temporary: list[str]

    def unreadable(self, error: Exception) -> InputError:
        from aifinops.sources.bills.diagnose import unreadable

        return unreadable(self.path, error, self.encoding)


def _prepare(con: Any, path: Path, fmt: BillFormat, opts: dict[str, Any], state: BillRead) -> _Scan:
    """Check the file is of `fmt` and build its conversion on `con` (its lookup tables)."""
    from aifinops.sources.bills.diagnose import bill_encoding

    for name in _REJECTS:  # a scan before this one on the connection left its rejects
        con.execute(f"DROP TABLE IF EXISTS {name}")
    encoding = bill_encoding(path)
    header = header_of(path, con, encoding)
    if encoding == "latin-1":
        state.problem(
            f"{path}: not UTF-8; read as Latin-1 (Windows-1252: only its rarely used characters, "
            "such as the euro sign, read otherwise)"
        )
    if not fmt.recognise(header):
        other = detect(header)
        hint = (
            f"this looks like {other.title}: use `aifinops ingest {other.name}`"
            if other
            else "FOCUS datasets: ingest focus; AWS CUR: ingest cur; Azure: ingest azure; "
            "OCI: ingest oci"
        )
        raise InputError(f"not {fmt.title}", where=str(path), hint=hint)
    try:
        exprs, amounts = _amounts_checked(lambda: fmt.expressions(header, opts))
    except InputError as error:
        error.where = error.where or str(path)
        raise
    joins, temporary = [], [*_REJECTS]
    for name, rows, on in fmt.joins(header):
        _lookup_table(con, name, rows)
        temporary.append(name)
        joins.append(on)
    key_names = _line_key(fmt, header, exprs, joins)
    key = ", ".join(f"coalesce(CAST({quote(n)} AS VARCHAR), chr(30))" for n in key_names)
    selected = []
    for f in COST_LINES:
        if f.name == "line_hash":
            expr = f"md5(concat_ws(chr(31), {key}))"
        elif f.name == "source":
            expr = literal(path.name)
        elif f.name == "line_id":
            expr = _line_id(fmt, header)
        else:
            expr = exprs.get(f.name, "NULL")
        selected.append(f"CAST({expr} AS {sql_type(f.type)}) AS {f.name}")
    selected.append(f"{_too_large(amounts)} AS _too_large")
    checks = " ".join(
        f"WHEN {col} IS NULL THEN 'no readable {what}'" for col, what in REQUIRED.items()
    )
    sql = (
        f"WITH src AS (SELECT * FROM "
        f"{_source(path, bool(opts.get('pad_short_rows')), encoding)}), "
        f"lines AS (SELECT {', '.join(selected)} FROM src {' '.join(joins)}) "
        f"SELECT *, CASE WHEN _too_large IS NOT NULL THEN 'an amount out of range' "
        f"{checks} ELSE NULL END AS _problem FROM lines"
    )
    columns = [header.names.index(n) for n in key_names]
    return _Scan(path, sql, key, columns, encoding, temporary)


def _finish(con: Any, path: Path, state: BillRead, scan: _Scan) -> None:
    """After the scan: the lines DuckDB rejected, and each skipped line by its number."""
    from aifinops.sources.bills.diagnose import not_utf8

    bad_text = _rejects(con, path, state)
    if bad_text is not None:  # UTF-8 at the start, not further on: refuse, drop nothing
        raise not_utf8(path, bad_text)
    _report_skipped(con, path, state, scan.encoding, scan.key_columns, scan.key)


@contextmanager
def _session(con: Any) -> Iterator[None]:
    """The settings a conversion needs on a connection that is not its own (UTC for a
    timestamp without an offset; no progress bar of DuckDB's), put back as they were."""
    wanted = {"TimeZone": "'UTC'", "enable_progress_bar": "false"}
    before = {k: con.execute(f"SELECT current_setting('{k}')").fetchone()[0] for k in wanted}
    try:
        for name, value in wanted.items():
            con.execute(f"SET {name} = {value}")
        yield
    finally:
        for name, was in before.items():
            con.execute(f"SET {name} = {literal(was) if isinstance(was, str) else was}")


def _skip_staged(con: Any, table: str, state: BillRead) -> int:
    """Note and delete the staged lines of this scan that carry a `_problem` (the table's
    earlier files have none left); returns how many."""
    where = f"FROM {quote(table)} WHERE _problem IS NOT NULL"
    count = int(con.execute(f"SELECT count(*) {where}").fetchone()[0])
    if not count:
        return 0
    state.skipped += count
    room = max(0, 50 - len(state.unplaced))
    rows = con.execute(
        f"SELECT _problem, _too_large, billed_cost, line_hash {where} ORDER BY rowid LIMIT {room}"
    ).fetchall()
    for why, too_large, cost, digest in rows:
        _unplaced(state, why, too_large, cost, digest)
    con.execute(f"DELETE {where}")
    return count


def _amounts_checked(build: Callable[[], dict[str, str]]) -> tuple[dict[str, str], list[str]]:
    """A format's expressions, and the raw amounts they parse with `money`."""
    token = _AMOUNTS.set([])
    try:
        exprs = build()
        return exprs, list(_AMOUNTS.get() or [])
    finally:
        _AMOUNTS.reset(token)


def _too_large(amounts: list[str]) -> str:
    """SQL: the first of a line's amounts whose magnitude is MAX_AMOUNT or more (as the
    file wrote it), else NULL. A DOUBLE is exact enough to compare with a power of ten."""
    if not amounts:
        return "NULL"
    whens = " ".join(
        f"WHEN abs(TRY_CAST({a} AS DOUBLE)) >= {MAX_AMOUNT} THEN CAST({a} AS VARCHAR)"
        for a in amounts
    )
    return f"CASE {whens} ELSE NULL END"


def _report_skipped(
    con: Any, path: Path, state: BillRead, encoding: str, columns: list[int], key: str
) -> None:
    """Report each line skipped for what it holds by its line number (a Parquet file's by its
    row number): a second pass over the file, made only when there are such lines, that finds
    them by their line hash (`key`: the SQL of its parts; `columns`: their positions)."""
    from aifinops.sources.bills.diagnose import lines_hashed

    if not state.unplaced:
        return
    wanted = dict(reversed(state.unplaced))  # the first note of each hash
    state.unplaced.clear()
    where = "line"
    if path.name.lower().endswith(".parquet"):
        where = "row"
        hashes = ", ".join(literal(h) for h in wanted)
        found = con.execute(
            f"SELECT n + 1, h FROM (SELECT file_row_number AS n, md5(concat_ws(chr(31), {key})) "
            f"AS h FROM read_parquet({literal(str(path))}, file_row_number = true)) "
            f"WHERE h IN ({hashes}) ORDER BY n"
        ).fetchall()
    else:
        found = list(lines_hashed(path, set(wanted), columns, encoding))
    for number, digest in found:
        if where == "line":
            state.problem(f"{path}:{number}: {wanted[digest]}; skipped")
        else:
            state.problem(f"{path}: row {number}: {wanted[digest]}; skipped")
    for digest in wanted.keys() - {d for _, d in found}:  # not found again: said without
        state.problem(f"{path}: a line with {wanted[digest]}; skipped")


def _lookup_table(con: Any, name: str, rows: list[dict[str, str]]) -> None:
    """A small lookup table from literal rows (registering a Python object would make
    DuckDB import pandas, two seconds of a short read)."""
    cols = list(rows[0])
    values = ", ".join("(" + ", ".join(literal(r.get(c)) for c in cols) + ")" for r in rows)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM (VALUES {values}) AS t"
        f"({', '.join(quote(c) for c in cols)})"
    )


def _line_key(
    fmt: BillFormat, header: Header, exprs: dict[str, str], joins: list[str]
) -> list[str]:
    """The columns whose equality makes two lines one line repeated: every column, or, where
    the file carries the provider's line identity (a CUR's `identity/LineItemId` and
    `identity/TimeInterval`), that identity and every column the conversion reads. The
    second is as strict for the lines we keep and does not hash the ~60 CUR columns that no
    cost line uses."""
    ids = [header.find(*spellings) for spellings in fmt.identity]
    if not ids or None in ids:
        return list(header.names)
    text = " ".join([*exprs.values(), *joins])
    read = [n for n in header.names if quote(n) in text and n not in ids]
    return [str(i) for i in ids] + read


def _line_id(fmt: BillFormat, header: Header) -> str:
    """The provider's identity of a line (CUR: LineItemId and TimeInterval), or NULL."""
    ids = [header.find(*spellings) for spellings in fmt.identity]
    if not ids or None in ids:
        return "NULL"
    return f"concat_ws(chr(31), {', '.join(quote(str(i)) for i in ids)})"


def _keep(table: pa.Table, state: BillRead) -> pa.Table:
    import pyarrow.compute as pc

    problem = table.column("_problem")
    bad = pc.is_valid(problem)
    if pc.any(bad).as_py():
        rejected = table.filter(bad)
        state.skipped += rejected.num_rows
        for why, too_large, cost, digest in zip(
            rejected.column("_problem").to_pylist(),
            rejected.column("_too_large").to_pylist(),
            rejected.column("billed_cost").to_pylist(),
            rejected.column("line_hash").to_pylist(),
            strict=True,
        ):
            _unplaced(state, why, too_large, cost, digest)
        table = table.filter(pc.invert(bad))
    table = table.drop_columns(["_problem", "_too_large"]).cast(COST_LINES)
    state.rows += table.num_rows
    return table


def _unplaced(state: BillRead, why: str, too_large: str | None, cost: Any, digest: str) -> None:
    """Keep what is wrong with a skipped line, to report it by line after the scan."""
    if too_large is not None:
        why = (
            f"an amount out of range ({too_large.strip()}; a line's amounts must be "
            f"under {MAX_AMOUNT:,} in magnitude)"
        )
    elif cost is not None:
        why = f"{why} (cost {cost})"
    if len(state.unplaced) < 50:
        state.unplaced.append((digest, why))


def _rejects(con: Any, path: Path, state: BillRead) -> int | None:
    """Report the lines DuckDB rejected; the first line that was not in the file's
    encoding, if any (the caller refuses the file: its money must not go missing)."""
    try:
        rows = con.execute(
            # one row per missing column of a short line: the first says how many it had
            "SELECT line, arg_min(error_type, column_idx), arg_min(error_message, column_idx) "
            f"FROM {_REJECTS[0]} GROUP BY line ORDER BY line"
        ).fetchall()
    except Exception:  # Parquet: no rejects table
        return None
    bad_text = None
    for line, kind, message in rows:
        if kind == "INVALID ENCODING":
            bad_text = line if bad_text is None else min(bad_text, line)
            continue
        state.skipped += 1
        found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", message or "")
        if found:
            want, got = found.groups()
            state.short += int(got) < int(want)
            state.problem(
                f"{path}:{line}: {got} fields where the header has {want} "
                f"({'cut mid-row?' if int(got) < int(want) else 'too many'}); skipped"
            )
        elif "unterminated quote" in (message or ""):
            state.short += 1
            state.problem(
                f"{path}:{line}: a quoted field opens here and is never closed "
                "(cut mid-row?); skipped"
            )
        else:
            state.problem(f"{path}:{line}: {kind.lower()}: {message}; skipped")
    return bad_text
