"""Samples dated 1900 or 9999 (a wrong clock, a corrupt line) are not stored, do not widen
what an ingest replaces, and do not move the default window (issue 12, item 13)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.conftest import H100


def _with_lines(tmp_path: Path, *stamps: str) -> Path:
    """The real capture, its query-gpu log given extra lines at these times."""
    logs = tmp_path / "h100"
    shutil.copytree(H100, logs)
    query = logs / "nvidia_smi_query_gpu.csv"
    lines = query.read_text().splitlines()
    rest = lines[-1].split(", ", 1)[1]
    query.write_text("\n".join([*lines, *(f"{s}, {rest}" for s in stamps)]) + "\n")
    return logs


def test_samples_of_1900_and_9999_are_left_out_with_a_note(
    make_service: Any, tmp_path: Path
) -> None:
    good = make_service(name="good.duckdb")
    clean = good.ingest_nvidia_smi(H100, host="lab")
    bad = make_service(name="bad.duckdb")
    logs = _with_lines(tmp_path, "1900/01/01 00:00:00.000", "9999/12/31 23:59:59.000")
    result = bad.ingest_nvidia_smi(logs, host="lab")
    assert any("sample row(s) dated outside 2000-01-01" in n for n in result.notes), result.notes
    # the valid samples are the capture's, no more: the bad lines were the last in the file
    assert bad.data_extent() == good.data_extent()
    assert bad.store.count("gpu_usage") == good.store.count("gpu_usage") == clean.rows
    # and the default window (the 7 days up to the newest sample) did not move to 9999
    assert bad.resolve_window(None, None) == good.resolve_window(None, None)
