"""Issue 12, item 8: `--db` refuses anything that is not a DuckDB database (or a new path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifinops.errors import StoreError
from aifinops.store.db import Store


def test_a_csv_given_as_the_store_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    bill = tmp_path / "bill.csv"
    text = "a,b\n1,2\n"
    bill.write_text(text)
    with pytest.raises(StoreError) as caught:
        Store(bill)
    assert caught.value.where == str(bill)
    assert "not a DuckDB database" in caught.value.message
    assert "--db" in (caught.value.hint or "")
    assert bill.read_text() == text  # nothing written into it


def test_a_parquet_file_given_as_the_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lines.parquet"
    pq.write_table(pa.table({"cost": [1.5, 2.5]}), path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="a Parquet file, not a DuckDB database"):
        Store(path)
    assert path.read_bytes() == before


def test_an_empty_file_and_a_directory_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    empty.touch()
    with pytest.raises(StoreError, match="an empty file"):
        Store(empty)
    with pytest.raises(StoreError, match="a directory"):
        Store(tmp_path)


def test_a_new_path_and_a_real_store_open(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "new.duckdb"
    store = Store(path)
    store.raw("CREATE TABLE kept (x INTEGER)")
    store.raw("INSERT INTO kept VALUES (7)")
    store.close()
    assert path.read_bytes()[8:12] == b"DUCK"
    again = Store(path)  # an existing DuckDB database opens
    assert again.raw("SELECT x FROM kept") == [(7,)]
    again.close()


def test_the_cli_says_so_in_one_line_with_a_non_zero_exit(cli: Any, tmp_path: Path) -> None:
    bill = tmp_path / "some.csv"
    bill.write_text("a,b\n1,2\n")
    done = cli("--db", str(bill), "bills", "summary", cwd=tmp_path)
    assert done.returncode == StoreError.exit_code
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bill}: a file of another kind, not a DuckDB database; it was "
                      "left as it is"]  # fmt: skip
    assert "hint:" in done.stderr
