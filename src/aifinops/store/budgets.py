"""The store's budgets: the ones applied by the CLI or API, each period's first time over
its limit, every alert's state (one row per stable key: it fires once), and the
deliveries of each alert event to each channel (retried until delivered)."""

from __future__ import annotations

from typing import Any

from aifinops.store.db import Store

ALERT_COLUMNS = ("key", "budget", "period", "alert", "basis", "threshold", "severity",
                 "state", "fired_ms", "resolved_ms", "spend", "event")  # fmt: skip
DELIVERY_COLUMNS = ("key", "action", "channel", "spec", "event", "attempts", "next_ms",
                    "delivered_ms", "last_error", "created_ms")  # fmt: skip


def budgets(store: Store) -> list[tuple[str, str, int, int]]:
    """(name, spec as JSON, created_ms, updated_ms) of every applied budget, by name."""
    rows = store.raw("SELECT name, spec, created_ms, updated_ms FROM budgets ORDER BY name")
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


def put_budget(store: Store, name: str, spec_json: str, at_ms: int) -> bool:
    """Create or replace a budget; True where it is new."""
    new = not store.raw("SELECT 1 FROM budgets WHERE name = ?", [name])
    store.raw(
        "INSERT INTO budgets VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "spec = excluded.spec, updated_ms = excluded.updated_ms",
        [name, spec_json, at_ms, at_ms],
    )
    return new


def delete_budget(store: Store, name: str) -> bool:
    return bool(store.raw("DELETE FROM budgets WHERE name = ? RETURNING name", [name]))


def last_check(store: Store, budget: str, period: str) -> int | None:
    """When the budget's period was last checked (and recorded)."""
    rows = store.raw("SELECT checked_ms FROM budget_periods WHERE budget = ? AND period = ?",
                     [budget, period])  # fmt: skip
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def exceeded_since(store: Store, budget: str, period: str) -> int | None:
    rows = store.raw("SELECT exceeded_ms FROM budget_periods WHERE budget = ? AND period = ?",
                     [budget, period])  # fmt: skip
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def set_exceeded(store: Store, budget: str, period: str, exceeded_ms: int | None,
                 checked_ms: int) -> None:  # fmt: skip
    store.raw(
        "INSERT INTO budget_periods VALUES (?, ?, ?, ?) ON CONFLICT (budget, period) DO UPDATE "
        "SET exceeded_ms = excluded.exceeded_ms, checked_ms = excluded.checked_ms",
        [budget, period, exceeded_ms, checked_ms],
    )


def alerts(store: Store, budget: str | None = None, period: str | None = None,
           limit: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
    """Alert rows, newest first (of one budget and period where given)."""
    where, params = [], []
    for column, value in (("budget", budget), ("period", period)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT {', '.join(ALERT_COLUMNS)} FROM budget_alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = store.raw(sql + " ORDER BY fired_ms DESC, key LIMIT ?", [*params, limit])
    return [dict(zip(ALERT_COLUMNS, r, strict=True)) for r in rows]


def fire(store: Store, row: dict[str, Any]) -> bool:
    """Record an alert that fired; False where its key fired before (nothing changes)."""
    done = store.raw(
        f"INSERT INTO budget_alerts ({', '.join(ALERT_COLUMNS)}) VALUES "
        f"({', '.join('?' for _ in ALERT_COLUMNS)}) ON CONFLICT (key) DO NOTHING RETURNING key",
        [row.get(c) for c in ALERT_COLUMNS],
    )
    return bool(done)


def resolve(store: Store, key: str, at_ms: int) -> bool:
    done = store.raw(
        "UPDATE budget_alerts SET state = 'resolved', resolved_ms = ? "
        "WHERE key = ? AND state = 'firing' RETURNING key",
        [at_ms, key],
    )
    return bool(done)


def add_delivery(store: Store, key: str, action: str, channel: str, spec_json: str,
                 event_json: str, at_ms: int) -> bool:  # fmt: skip
    """Queue an event for a channel, once: the same key, action and channel again is a
    no-op (a restart, a second check of the same state)."""
    done = store.raw(
        f"INSERT INTO alert_deliveries ({', '.join(DELIVERY_COLUMNS)}) "
        "VALUES (?, ?, ?, ?, ?, 0, ?, NULL, NULL, ?) "
        "ON CONFLICT (key, action, channel) DO NOTHING RETURNING key",
        [key, action, channel, spec_json, event_json, at_ms, at_ms],
    )
    return bool(done)


def deliveries(store: Store, *, due_ms: int | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
    """Deliveries, newest first; with `due_ms`, only the undelivered ones due by then
    (oldest first, as they are sent)."""
    sql = f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM alert_deliveries"
    if due_ms is not None:
        rows = store.raw(sql + " WHERE delivered_ms IS NULL AND next_ms <= ? "
                         "ORDER BY created_ms, key, channel LIMIT ?", [due_ms, limit])  # fmt: skip
    else:
        rows = store.raw(sql + " ORDER BY created_ms DESC, key, channel LIMIT ?", [limit])
    return [dict(zip(DELIVERY_COLUMNS, r, strict=True)) for r in rows]


def claim(store: Store, row: dict[str, Any], until_ms: int) -> bool:
    """Claim a due delivery to send it: its next try moves to `until_ms`, only where it is
    still as `row` read it (undelivered, due at the same `next_ms`). Of two senders that read
    it (two replicas, `budget check` beside a server) one claims it, so one sends it; a sender
    that dies with it claimed leaves it due again at `until_ms`."""
    done = store.raw(
        "UPDATE alert_deliveries SET next_ms = ? WHERE key = ? AND action = ? AND channel = ? "
        "AND delivered_ms IS NULL AND next_ms = ? RETURNING key",
        [until_ms, row["key"], row["action"], row["channel"], row["next_ms"]],
    )
    return bool(done)


def delivered(store: Store, key: str, action: str, channel: str, at_ms: int) -> None:
    store.raw(
        "UPDATE alert_deliveries SET delivered_ms = ?, attempts = attempts + 1, "
        "last_error = NULL WHERE key = ? AND action = ? AND channel = ?",
        [at_ms, key, action, channel],
    )


def failed(store: Store, key: str, action: str, channel: str, error: str,
           next_ms: int) -> None:  # fmt: skip
    store.raw(
        "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?, next_ms = ? "
        "WHERE key = ? AND action = ? AND channel = ?",
        [error, next_ms, key, action, channel],
    )


def running_workloads(store: Store, at_ms: int) -> list[dict[str, Any]]:
    """Workloads holding GPUs at `at_ms` (started, not ended), with their labels and their
    namespace's labels: what a throttle counts."""
    rows = store.raw(
        "SELECT w.namespace, w.labels, n.labels, w.gpu_request FROM workloads w "
        "LEFT JOIN namespaces n ON n.namespace = w.namespace "
        "WHERE coalesce(w.gpu_request, 0) > 0 AND (w.start_ms IS NULL OR w.start_ms <= ?) "
        "AND (w.end_ms IS NULL OR w.end_ms > ?)",
        [at_ms, at_ms],
    )
    return [{"namespace": r[0], "labels": dict(r[1] or {}), "namespace_labels": dict(r[2] or {}),
             "gpus": float(r[3] or 0)} for r in rows]  # fmt: skip


def newest_workload_start(store: Store, at_ms: int) -> int | None:
    """The newest start of a workload seen by `at_ms`: the inventory counts pods admitted
    up to about then (the admission webhook keeps counting the ones admitted after)."""
    rows = store.raw("SELECT max(start_ms) FROM workloads WHERE start_ms <= ?", [at_ms])
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def firing(store: Store, budget: str) -> list[dict[str, Any]]:
    """A budget's alerts still firing, in any period."""
    rows = store.raw(
        f"SELECT {', '.join(ALERT_COLUMNS)} FROM budget_alerts WHERE budget = ? "
        "AND state = 'firing' ORDER BY fired_ms, key",
        [budget],
    )
    return [dict(zip(ALERT_COLUMNS, r, strict=True)) for r in rows]


def fired_to(store: Store, key: str) -> list[str]:
    """The channels (their specs, as JSON) an alert's firing was queued for."""
    rows = store.raw(
        "SELECT spec FROM alert_deliveries WHERE key = ? AND action = 'fire' ORDER BY channel",
        [key],
    )
    return [r[0] for r in rows]
