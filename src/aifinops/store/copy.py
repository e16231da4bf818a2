"""Copy a whole store into another (`aifinops store copy`): DuckDB to PostgreSQL, or back.

Both ends are migrated to this version first, so their tables are the same; every table
is then read in Arrow parts and appended in bulk (COPY on PostgreSQL), in one transaction
on the target. The target must hold no facts yet: a copy never merges two stores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aifinops.errors import UsageError
from aifinops.store.db import Store

# the store's own bookkeeping, which the target has made for itself
SKIPPED = ("schema_migrations", "leases")
SEQUENCES = {"event_seq": ("finding_events", "audit_log")}


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def copy_store(
    source: Store, target: Store, progress: Callable[[str, int], None] | None = None
) -> list[Copied]:
    """Copy every table of `source` into `target` (empty); the rows copied per table."""
    tables = [t for t in source.tables() if t not in SKIPPED]
    missing = sorted(set(tables) - set(target.tables()))
    if missing:
        raise UsageError(f"the target has no table {', '.join(missing)}", where=target.where)
    full = [t for t in tables if target.count(t)]
    if full:
        raise UsageError(
            f"the target store is not empty ({', '.join(full)} hold rows); nothing was copied",
            where=target.where,
            hint="copy into a new store: a new DuckDB file, or a new PostgreSQL database or "
            "schema (postgresql://.../DB?schema=NAME)",
        )
    done = []
    with target.transaction():
        for table in tables:
            columns = list(source.table(table).columns)
            rows = 0
            for part in source.scan(table, columns):
                rows += target.insert_arrow(table, part)
                if progress:
                    progress(table, rows)
            done.append(Copied(table, rows))
        for sequence, users in SEQUENCES.items():
            last = max(
                (
                    int(r[0][0] or 0)
                    for r in (source.raw(f"SELECT max(seq) FROM {t}") for t in users)
                ),
                default=0,
            )
            target.restart_sequence(sequence, last)
    return done
