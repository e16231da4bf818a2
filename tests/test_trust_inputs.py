"""Issue 12, item 12: everyday mistakes give one line (what, where, a hint) and a non-zero
exit, never a traceback: a missing input of every ingest kind, binary garbage, a bill cut
inside a quoted field."""

from __future__ import annotations

import csv
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from aifinops.service import Service
from aifinops.sources.bills.engine import formats, read_bill
from tests.conftest import H100 as H100_DIR
from tests.conftest import shared_data

CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"
# 4 KiB of fixed "random" bytes: a NUL in the first line, invalid UTF-8 throughout
GARBAGE = bytes((i * 7919 + 13) % 256 for i in range(4096))


def _one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("nvidia-smi", "logs"),
        ("kubernetes", "dump.json"),
        ("dcgm", "metrics.txt"),
        ("slurm", "sacct.json"),
        ("inference", "vllm.txt"),
        ("opencost", "allocation.json"),
        ("focus", "focus.csv"),
        ("cur", "cur.csv"),
        ("azure", "azure.csv"),
        ("oci", "oci.csv"),
    ],
)
def test_a_missing_input_is_one_line_naming_it(
    cli: Any, tmp_path: Path, kind: str, name: str
) -> None:
    missing = tmp_path / "not-here" / name
    done = cli("--db", str(tmp_path / "store.duckdb"), "ingest", kind, str(missing), cwd=tmp_path)
    assert done.returncode == InputError.exit_code
    line = _one_error(done)
    assert line.startswith(f"error: {missing}: no such file"), line


def test_a_missing_agent_segment_is_an_input_error(make_service, tmp_path: Path) -> None:
    svc: Service = make_service()
    missing = tmp_path / "spool" / "segment-000001.jsonl"
    with pytest.raises(InputError) as caught:
        svc.ingest_agent_segment(missing)
    assert caught.value.where == str(missing)
    assert caught.value.message == "no such file"


def test_binary_garbage_to_ingest_kubernetes(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "nodes.json"
    path.write_bytes(GARBAGE)
    line = _one_error(
        cli("--db", str(tmp_path / "store.duckdb"), "ingest", "kubernetes", str(path), cwd=tmp_path)
    )
    assert line.startswith(f"error: {path}: not a kubectl JSON or YAML dump"), line


def test_a_utf16_kubectl_dump_is_read(make_service, tmp_path: Path) -> None:
    """`kubectl get ... -o json > file` in Windows PowerShell writes UTF-16 with a BOM."""
    doc = (
        '{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", '
        '"kind": "Namespace", "metadata": {"name": "research"}}]}'
    )
    path = tmp_path / "ns.json"
    path.write_bytes(doc.encode("utf-16"))
    svc: Service = make_service()
    (result,) = svc.ingest_kubernetes([path])
    assert any("1 namespaces" in note for note in result.notes), result.notes


@pytest.mark.parametrize("kind", ["focus", "cur", "azure", "oci"])
def test_binary_garbage_to_a_bill_reader(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bill.csv"
    path.write_bytes(GARBAGE)
    with pytest.raises(InputError) as caught:
        list(read_bill(path, formats()[kind]))
    assert caught.value.where == str(path)
    # the first NUL byte is on the first line of these bytes
    assert GARBAGE.index(b"\x00") < GARBAGE.index(b"\n")
    assert caught.value.message == "not a CSV file: binary data (a NUL byte) at line 1"
    assert "sniff" not in str(caught.value)


def test_a_bill_cut_inside_a_quoted_field(cli: Any, tmp_path: Path) -> None:
    """The real CUR sample cut in the middle of a quoted `"Amazon Web Services Canada, Inc."`
    of its 601st record: the message names the line where that record starts."""
    with shared_data(CUR).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    whole = io.StringIO()
    csv.writer(whole, lineterminator="\n").writerows(rows[:600])
    last = io.StringIO()
    csv.writer(last, lineterminator="\n").writerow(rows[600])
    text = last.getvalue()
    cut_at = text.index('"Amazon Web Services Canada, Inc."') + len('"Amazon Web Services')
    path = tmp_path / "cut.csv"
    path.write_text(whole.getvalue() + text[:cut_at], encoding="utf-8")
    line = whole.getvalue().count("\n") + 1  # the cut record's first line
    with pytest.raises(InputError) as caught:
        list(read_bill(path, formats()["cur"]))
    assert caught.value.where == str(path)
    assert caught.value.message.startswith(f"line {line}: a quoted field opens here"), (
        caught.value.message
    )
    assert "sniff" not in str(caught.value)

    done = cli("--db", str(tmp_path / "store.duckdb"), "ingest", "cur", str(path), cwd=tmp_path)
    assert _one_error(done).startswith(f"error: {path}: line {line}: a quoted field")


@pytest.mark.parametrize(
    "args",
    [
        ["export", "focus", "--window", "2026-11-23T10:00Z,2026-11-23T11:00Z", "-o"],
        ["export", "chargeback", "--month", "2026-11", "-o"],
    ],
)
def test_an_unwritable_export_path_is_one_line(cli: Any, tmp_path: Path, args: list[str]) -> None:
    """A folder that cannot be made (under a file) and a read-only folder: exit 5, no file."""
    ingest = cli(
        "--db",
        str(tmp_path / "store.duckdb"),
        "ingest",
        "nvidia-smi",
        str(H100_DIR),
        "--host",
        "lab",
        cwd=tmp_path,
    )
    assert ingest.returncode == 0, ingest.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "out.csv"
    line = _one_error(cli("--db", str(tmp_path / "store.duckdb"), *args, str(target), cwd=tmp_path))
    assert str(target) in line and "cannot write it" in line
    assert not target.exists()
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        line = _one_error(
            cli(
                "--db", str(tmp_path / "store.duckdb"), *args, str(locked / "out.csv"), cwd=tmp_path
            )
        )
        assert "cannot write it" in line
