"""A read never imports pandas (issue 12, item 14): `cost` on a small store runs without it
(pandas costs some 0.4-1 s cold). pyarrow imports pandas when it builds Arrow from Python
objects (`pa.table`, `pa.array`, `ibis.memtable`), so the engine's small tables are built
in DuckDB instead."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aifinops.demo.capture import CAPTURE_HOST, h100_capture_dir, owners_from_events
from aifinops.service import Service
from tests.conftest import H100_NS, H100_PRICE

READS = [
    ["cost", "--by", "team"],
    ["cost", "--by", "team", "--format", "json"],
    ["cost", "--by", "model", "--unit", "tokens"],
    ["cost", "--by", "team", "--reconciled"],
]


@pytest.fixture
def small_store(make_service: Callable[..., Service], tmp_path: Path) -> tuple[Path, Path]:
    """The H100 capture, priced, its team taken from its namespace (no label names it, so
    the engine's team map, a small table of its own, is read too); the service is closed
    so that the reads can open the file."""
    svc = make_service(
        {
            "prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": H100_PRICE}},
            "attribution": {
                "labels": {"team": ["no-such-label"]},
                "namespace_teams": {H100_NS: "lab-team"},
            },
        }
    )
    cap = h100_capture_dir()
    owners = owners_from_events(cap / "workload_events.jsonl", namespace=H100_NS)
    svc.ingest_nvidia_smi(cap, host=CAPTURE_HOST, owners=owners)
    svc.close()
    return tmp_path / "store.duckdb", tmp_path / "store.duckdb.yaml"


@pytest.mark.parametrize("args", READS, ids=[" ".join(a) for a in READS])
def test_read_imports_no_pandas(small_store: tuple[Path, Path], args: list[str]) -> None:
    db, config = small_store
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "aifinops", "--db", str(db),
         "--config", str(config), *args],
        capture_output=True, text=True, timeout=300, cwd=db.parent,
    )  # fmt: skip
    imported = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert imported, done.stderr[-2000:]  # -X importtime did report
    assert done.returncode == 0, done.stderr[-2000:]
    if "team" in args:
        assert "lab-team" in done.stdout
    pandas = [line for line in imported if "pandas" in line]
    assert not pandas, "\n".join(pandas[:20])
