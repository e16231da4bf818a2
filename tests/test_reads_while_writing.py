"""Reads while `collect` writes, and reads of a read-only store: real processes, as a user
runs them (DuckDB lets one process write a file, or several read it, never both at once)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aifinops.errors import StoreError
from aifinops.store.db import Store
from tests.conftest import H100_PRICE

SCRAPE = (
    'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",Hostname="n1",modelName="NVIDIA H100 80GB HBM3",'
    'pod="p",namespace="ml"} 50\n'
)


def _aifinops(*args: str, cwd: Path, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifinops", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, **options)  # type: ignore[call-overload]  # fmt: skip


@pytest.fixture
def place(tmp_path: Path) -> Path:
    return tmp_path


def _config(place: Path) -> Path:
    scrape = place / "metrics.txt"
    scrape.write_text(SCRAPE)
    cfg = place / "cfg.yaml"
    source = {"name": "g", "kind": "dcgm", "url": str(scrape), "interval": "1s"}
    prices = {"gpu_models": {"NVIDIA H100 80GB HBM3": H100_PRICE}}
    cfg.write_text(yaml.safe_dump({"prices": prices, "sources": [source]}))
    return cfg


def test_reads_run_while_collect_writes(place: Path) -> None:
    cfg = _config(place)
    common = ("--db", str(place / "s.duckdb"), "--config", str(cfg))
    collector = subprocess.Popen(
        [sys.executable, "-m", "aifinops", *common, "collect", "--duration", "20"],
        cwd=place, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert collector.stdout is not None
        first = collector.stdout.readline()  # the first run is written
        assert first.startswith("g (dcgm)"), first + collector.stderr.read()
        reads, overlapped, deadline = [], 0, time.monotonic() + 90
        for _ in range(3):  # bounded: three rounds, each two reads
            if time.monotonic() > deadline:
                break
            for args in (("sources", "status", "--format", "json"), ("cost",)):
                overlapped += collector.poll() is None
                reads.append((args, _aifinops(*common, *args, cwd=place)))
        failed = [(a, r.returncode, r.stderr) for a, r in reads if r.returncode != 0]
        assert not failed
        assert overlapped >= 2  # the collector was running during the reads
        status = json.loads(reads[0][1].stdout)
        assert status[0]["name"] == "g" and status[0]["runs"] >= 1
        assert "GPU-hours" in reads[1][1].stdout or "team" in reads[1][1].stdout
    finally:
        _, err = collector.communicate(timeout=120)
    assert collector.returncode == 0, err
    # and the collector went on running on its interval meanwhile
    after = _aifinops(*common, "sources", "status", "--format", "json", cwd=place)
    assert json.loads(after.stdout)[0]["runs"] >= 3


def test_a_read_only_store_answers_reads(place: Path) -> None:
    cfg = _config(place)
    db = place / "s.duckdb"
    common = ("--db", str(db), "--config", str(cfg))
    assert _aifinops(*common, "collect", "--once", cwd=place).returncode == 0
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # 444
    # (file modes do not bind root; the store is opened read-only all the same, below)
    for args in (("cost",), ("sources", "status", "--format", "json")):
        done = _aifinops(*common, *args, cwd=place)
        assert done.returncode == 0, done.stderr
    assert not Path(f"{db}.wal").exists()
    store = Store.for_reads(db)
    assert store.read_only and store.schema_version() > 0
    store.close()


def test_a_locked_store_is_a_clear_error_after_a_bounded_wait(place: Path) -> None:
    db = place / "s.duckdb"
    Store(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from aifinops.store.db import Store; "
         f"s = Store({str(db)!r}); print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            Store.for_reads(db, lock_wait=1.0)
        waited = time.monotonic() - started
        assert 0.9 <= waited < 10
        assert "another aifinops process is writing" in caught.value.message
        assert caught.value.where == str(db) and caught.value.hint
    finally:
        holder.kill()
        holder.communicate()
