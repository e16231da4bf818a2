"""Moving a whole store between engines (`aifinops store copy`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aifinops.errors import UsageError
from aifinops.store.copy import Copied, copy_store
from aifinops.store.db import Store
from aifinops.store.engine import is_postgres


def copy(
    source: str, target: str, progress: Callable[[str, int], None] | None = None
) -> list[Copied]:
    """Copy the store at `source` (a DuckDB file or a PostgreSQL URL) into a new one at
    `target`; the rows copied per table."""
    if source == target:
        raise UsageError("--from and --to name the same store", where=source)
    if not is_postgres(source) and not Path(source).exists():
        raise UsageError("no store there", where=source, hint="--from names an existing store")
    src = Store(source)
    try:
        dst = Store(target)
        try:
            return copy_store(src, dst, progress)
        finally:
            dst.close()
    finally:
        src.close()
