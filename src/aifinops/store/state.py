"""The store's own bookkeeping: the ingest log (what was loaded, by content digest), the
sources' checkpoints and health, and the cache of price-API answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aifinops.store.db import Store

SOURCE_STATE = ("name", "kind", "checkpoint_ms", "last_run_ms", "last_ok_ms", "last_error",
                "runs", "failures", "rows")  # fmt: skip


@dataclass(frozen=True)
class LoggedInput:
    digest: str
    kind: str
    path: str
    node: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    rows: int = 0


def seen(store: Store, digest: str) -> bool:
    """Whether an input with this content digest was stored before."""
    return bool(store.raw("SELECT 1 FROM ingest_log WHERE input_hash = ?", [digest]))


def log_input(store: Store, entry: LoggedInput, at: datetime) -> None:
    store.raw(
        "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [entry.digest, entry.kind, entry.path, entry.node, entry.start_ms, entry.end_ms,
         entry.rows, at.replace(tzinfo=None)],
    )  # fmt: skip


def source_states(store: Store) -> dict[str, dict[str, Any]]:
    """Each collected source's row of `source_state`, by name."""
    rows = store.raw(f"SELECT {', '.join(SOURCE_STATE)} FROM source_state")
    return {r[0]: dict(zip(SOURCE_STATE, r, strict=True)) for r in rows}


def record_run(
    store: Store,
    name: str,
    kind: str,
    *,
    at_ms: int,
    checkpoint_ms: int | None,
    error: str | None,
    rows: int,
) -> None:
    """One run of a source: counts add up, the last success is kept when this run failed."""
    ok = error is None
    store.raw(
        "INSERT INTO source_state (name, kind, checkpoint_ms, last_run_ms, last_ok_ms, "
        "last_error, runs, failures, rows) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
        "checkpoint_ms = excluded.checkpoint_ms, last_run_ms = excluded.last_run_ms, "
        "last_ok_ms = coalesce(excluded.last_ok_ms, source_state.last_ok_ms), "
        "last_error = excluded.last_error, runs = source_state.runs + 1, "
        "failures = source_state.failures + excluded.failures, "
        "rows = source_state.rows + excluded.rows",
        [name, kind, checkpoint_ms, at_ms, at_ms if ok else None, error, 0 if ok else 1, rows],
    )


def cached_prices(store: Store) -> list[tuple[str, int, str]]:
    """(provider, fetched_ms, offers as JSON) for every provider asked before."""
    return [(r[0], int(r[1]), r[2]) for r in store.raw(
        "SELECT provider, fetched_ms, offers FROM price_cache")]  # fmt: skip


def cache_prices(store: Store, provider: str, fetched_ms: int, offers_json: str) -> None:
    store.raw(
        "INSERT INTO price_cache VALUES (?, ?, ?) ON CONFLICT (provider) DO UPDATE "
        "SET fetched_ms = excluded.fetched_ms, offers = excluded.offers",
        [provider, fetched_ms, offers_json],
    )


# -- the server's tokens and audit log ---------------------------------------------------------
TOKEN_COLUMNS = ("name", "role", "token_hash", "created_ms", "revoked_ms")
AUDIT_COLUMNS = ("ts_ms", "actor", "role", "action", "target", "status", "detail")


def tokens(store: Store) -> list[dict[str, Any]]:
    """Every API token's row (its hash, never the token), by name."""
    rows = store.raw(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens ORDER BY name")
    return [dict(zip(TOKEN_COLUMNS, r, strict=True)) for r in rows]


def add_token(store: Store, name: str, role: str, token_hash: str, at_ms: int) -> bool:
    """Store a new token's hash; False where a live token has that name already (a revoked
    one is replaced)."""
    if store.raw("SELECT 1 FROM api_tokens WHERE name = ? AND revoked_ms IS NULL", [name]):
        return False
    store.raw(
        "INSERT INTO api_tokens VALUES (?, ?, ?, ?, NULL) ON CONFLICT (name) DO UPDATE SET "
        "role = excluded.role, token_hash = excluded.token_hash, "
        "created_ms = excluded.created_ms, revoked_ms = NULL",
        [name, role, token_hash, at_ms],
    )
    return True


def revoke_token(store: Store, name: str, at_ms: int) -> bool:
    found = store.raw(
        "UPDATE api_tokens SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL RETURNING name",
        [at_ms, name],
    )
    return bool(found)


def audit(store: Store, entry: dict[str, Any]) -> None:
    store.raw(
        f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, nextval('event_seq'))",
        [entry.get(c) for c in AUDIT_COLUMNS],
    )


def audit_entries(store: Store, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    rows = store.raw(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY ts_ms DESC, seq DESC "
        "LIMIT ? OFFSET ?",
        [limit, offset],
    )
    return [dict(zip(AUDIT_COLUMNS, r, strict=True)) for r in rows]
