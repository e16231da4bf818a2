"""The store's recommendations: each finding under its stable id (a later run of the same
rule on the same scope updates it, keeping its status), and the history of each."""

from __future__ import annotations

from typing import Any

from aifinops.store.db import Store

COLUMNS = ("id", "rule", "severity", "scope", "evidence", "monthly_saving", "confidence",
           "action", "patch", "currency", "first_seen_ms", "last_seen_ms", "status", "reason",
           "status_ms")  # fmt: skip


def upsert(store: Store, rows: list[dict[str, Any]], at_ms: int) -> list[str]:
    """Store a run's findings: new ones `open`, known ones updated in place (numbers,
    evidence, last seen) with their status kept. The ids that were new."""
    new = []
    for r in rows:
        found = store.raw("SELECT 1 FROM findings WHERE id = ?", [r["id"]])
        if not found:
            new.append(r["id"])
        store.raw(
            f"INSERT INTO findings ({', '.join(COLUMNS)}) VALUES "
            f"({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (id) DO UPDATE SET "
            "severity = excluded.severity, scope = excluded.scope, "
            "evidence = excluded.evidence, monthly_saving = excluded.monthly_saving, "
            "confidence = excluded.confidence, action = excluded.action, "
            "patch = excluded.patch, currency = excluded.currency, "
            "last_seen_ms = excluded.last_seen_ms",
            [r["id"], r["rule"], r["severity"], r["scope"], r["evidence"], r["monthly_saving"],
             r["confidence"], r["action"], r["patch"], r["currency"], at_ms, at_ms, "open",
             None, None],
        )  # fmt: skip
    for fid in new:
        event(store, fid, at_ms, "found", None, None)
    return new


def findings(store: Store, *, status: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM findings"
    params: list[Any] = []
    if status is not None:
        sql += " WHERE status = ?"
        params.append(status)
    rows = store.raw(sql + " ORDER BY monthly_saving DESC, id", params)
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def set_status(store: Store, fid: str, status: str, reason: str | None, at_ms: int,
               actor: str | None) -> bool:  # fmt: skip
    done = store.raw(
        "UPDATE findings SET status = ?, reason = ?, status_ms = ? WHERE id = ? RETURNING id",
        [status, reason, at_ms, fid],
    )
    if done:
        event(store, fid, at_ms, status, actor, reason)
    return bool(done)


def event(store: Store, fid: str, at_ms: int, what: str, actor: str | None,
          detail: str | None) -> None:  # fmt: skip
    store.raw("INSERT INTO finding_events VALUES (?, ?, ?, ?, ?)",
              [fid, at_ms, what, actor, detail])  # fmt: skip


def history(store: Store, fid: str) -> list[dict[str, Any]]:
    rows = store.raw(
        "SELECT ts_ms, event, actor, detail FROM finding_events WHERE id = ? ORDER BY ts_ms, rowid",
        [fid],
    )
    return [{"ts_ms": r[0], "event": r[1], "actor": r[2], "detail": r[3]} for r in rows]
