"""Leases in the store: which holder may do a named piece of work (the periodic jobs of
`aifinops serve`) until when. Taking and renewing are one atomic statement, so two
replicas racing for a lease cannot both get it; time is the caller's (ms), never the
clock's (decision 0021)."""

from __future__ import annotations

from typing import Any

from aifinops.store.db import Store

_FOREVER = 2**62  # ms: every lease has run out by then
# a lease taken over (or new) starts its `acquired_ms` now; one renewed by its holder keeps
# it, so `acquired_ms` says since when the holder has held it without a break
_TAKE = (
    "INSERT INTO leases (name, holder, acquired_ms, expires_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
    "acquired_ms = CASE WHEN leases.holder = excluded.holder AND leases.expires_ms > ? "
    "THEN leases.acquired_ms ELSE excluded.acquired_ms END, "
    "expires_ms = excluded.expires_ms "
    "WHERE leases.holder = excluded.holder OR leases.expires_ms <= ? "
    "RETURNING holder"
)


def take(
    store: Store, name: str, holder: str, now_ms: int, ttl_ms: int, *, force: bool = False
) -> bool:
    """Take the lease `name` for `holder` until `now_ms + ttl_ms`, or renew it: True where
    `holder` holds it now. It is taken where no one holds it or its holder's time ran out
    (`expires_ms <= now_ms`: the holder died, stopped, or could not renew); it is refused
    while another holder's time runs, unless `force` (a store only one process serves:
    any other holder is a dead one)."""
    ran_out_by = _FOREVER if force else now_ms
    rows = store.raw(_TAKE, [name, holder, now_ms, now_ms + ttl_ms, now_ms, ran_out_by])
    return bool(rows) and rows[0][0] == holder


def release(store: Store, name: str, holder: str) -> bool:
    """Give the lease up (a replica that stops): another may take it at once. False where
    `holder` did not hold it (it ran out and another took it)."""
    rows = store.raw(
        "DELETE FROM leases WHERE name = ? AND holder = ? RETURNING name", [name, holder]
    )
    return bool(rows)


def held(store: Store, name: str) -> dict[str, Any] | None:
    """The lease's row (holder, acquired_ms, expires_ms) as last taken or renewed, or None
    where no one has taken it (or it was released); whether it still runs is the caller's
    question (its `now` against `expires_ms`)."""
    rows = store.raw("SELECT holder, acquired_ms, expires_ms FROM leases WHERE name = ?", [name])
    if not rows:
        return None
    holder, acquired, expires = rows[0]
    return {"name": name, "holder": holder, "acquired_ms": int(acquired),
            "expires_ms": int(expires)}  # fmt: skip
