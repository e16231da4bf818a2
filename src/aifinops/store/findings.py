"""The store's recommendations: each finding under its stable id (a later run of the same
rule on the same scope updates it, keeping its status), and the history of each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from aifinops.store.db import Store

COLUMNS = ("id", "rule", "severity", "scope", "evidence", "monthly_saving", "confidence",
           "action", "patch", "currency", "first_seen_ms", "last_seen_ms", "status", "reason",
           "status_ms")  # fmt: skip


def upsert(store: Store, rows: list[dict[str, Any]], at_ms: int) -> list[str]:
    """Store a run's findings in one statement: new ones `open`, known ones updated in
    place (numbers, evidence, last seen) with their status kept, a resolved one found
    again open again (each in its history). The ids that were new. An id given twice
    keeps its last row."""
    if not rows:
        return []
    last = {r["id"]: r for r in rows}  # one row per id: ON CONFLICT updates a row once
    data = pa.table({
        **{c: [str(r[c]) if r[c] is not None else None for r in last.values()]
           for c in ("id", "rule", "severity", "scope", "evidence", "monthly_saving",
                     "confidence", "action", "patch", "currency")},
    })  # fmt: skip
    with store.attached("_incoming_findings", data) as view:
        known = f'SELECT id FROM "{view}" WHERE id NOT IN (SELECT id FROM findings)'
        new = sorted(r[0] for r in store.raw(known))
        again = sorted(r[0] for r in store.raw(
            f"SELECT f.id FROM findings f JOIN \"{view}\" v USING (id) "
            "WHERE f.status = 'resolved'"))  # fmt: skip
        store.raw(
            f"INSERT INTO findings ({', '.join(COLUMNS)}) SELECT id, rule, severity, scope, "
            "evidence, CAST(monthly_saving AS DECIMAL(38, 6)), "
            "CAST(confidence AS DECIMAL(9, 6)), action, patch, currency, ?, ?, 'open', NULL, "
            f'NULL FROM "{view}" ON CONFLICT (id) DO UPDATE SET '
            "severity = excluded.severity, scope = excluded.scope, "
            "evidence = excluded.evidence, monthly_saving = excluded.monthly_saving, "
            "confidence = excluded.confidence, action = excluded.action, "
            "patch = excluded.patch, currency = excluded.currency, "
            "last_seen_ms = excluded.last_seen_ms",
            [at_ms, at_ms],
        )
    if again:
        store.raw("UPDATE findings SET status = 'open', status_ms = ? "
                  "WHERE id IN (SELECT unnest(CAST(? AS VARCHAR[])))", [at_ms, again])  # fmt: skip
    _events(store, [(fid, "found") for fid in new] + [(fid, "found again") for fid in again],
            at_ms)  # fmt: skip
    return new


def _events(store: Store, what: list[tuple[str, str]], at_ms: int,
            detail: str | None = None) -> None:  # fmt: skip
    """Many history events at once (no actor)."""
    if what:
        events = pa.table({
            "id": [w[0] for w in what], "ts_ms": pa.array([at_ms] * len(what), pa.int64()),
            "event": [w[1] for w in what], "n": pa.array(range(len(what)), pa.int64()),
            "detail": pa.array([detail] * len(what), pa.string())})  # fmt: skip
        with store.attached("_incoming_events", events) as view:
            store.raw(  # each takes the next number of the sequence, in the given order
                "INSERT INTO finding_events (id, ts_ms, event, detail, seq) "
                f"SELECT id, ts_ms, event, detail, nextval('event_seq') FROM "
                f'(SELECT * FROM "{view}" ORDER BY n) AS e'
            )


def resolve_missing(store: Store, rules: Sequence[str], seen: Sequence[str], at_ms: int,
                    detail: str) -> list[str]:  # fmt: skip
    """Open findings of `rules` that a run over the newest data did not find again are
    resolved (dismissed and applied ones are left as they are). The ids resolved."""
    if not rules:
        return []
    done = store.raw(
        "UPDATE findings SET status = 'resolved', status_ms = ? WHERE status = 'open' "
        "AND rule IN (SELECT unnest(CAST(? AS VARCHAR[]))) "
        "AND id NOT IN (SELECT unnest(CAST(? AS VARCHAR[]))) RETURNING id",
        [at_ms, list(rules), list(seen) or [""]],
    )
    ids = sorted(r[0] for r in done)
    _events(store, [(fid, "resolved") for fid in ids], at_ms, detail)
    return ids


def findings(store: Store, *, status: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM findings"
    params: list[Any] = []
    if status is not None:
        sql += " WHERE status = ?"
        params.append(status)
    rows = store.raw(sql + " ORDER BY monthly_saving DESC, id", params)
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def status_of(store: Store, fid: str) -> tuple[str, str | None, int | None] | None:
    """A finding's status, its reason and since when; None when there is no such finding."""
    rows = store.raw("SELECT status, reason, status_ms FROM findings WHERE id = ?", [fid])
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


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
    store.raw("INSERT INTO finding_events (id, ts_ms, event, actor, detail, seq) "
              "VALUES (?, ?, ?, ?, ?, nextval('event_seq'))",
              [fid, at_ms, what, actor, detail])  # fmt: skip


def history(store: Store, fid: str) -> list[dict[str, Any]]:
    rows = store.raw(
        "SELECT ts_ms, event, actor, detail FROM finding_events WHERE id = ? ORDER BY ts_ms, seq",
        [fid],
    )
    return [{"ts_ms": r[0], "event": r[1], "actor": r[2], "detail": r[3]} for r in rows]
