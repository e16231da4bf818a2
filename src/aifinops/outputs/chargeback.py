"""The chargeback table for finance as CSV text (`aifinops export chargeback`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aifinops.errors import cannot_write
from aifinops.outputs.csv_cells import csv_text


def chargeback_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of a chargeback (groups, then the TOTAL row) as CSV text, header first."""
    return csv_text(list(rows[0]), rows) if rows else ""


def write_chargeback(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """The chargeback CSV written to `path` (its folder made if need be)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(chargeback_csv(rows), encoding="utf-8")
    except OSError as error:
        raise cannot_write(path, error) from error
