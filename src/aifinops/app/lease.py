"""Leases: one replica of `aifinops serve` at a time runs the periodic jobs, by holding a
named lease in the store that it renews, and that any replica may take once its holder
stopped renewing it (died, hung, lost the database). The time is the service's clock
(decision 0021)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aifinops.app.context import AppContext
from aifinops.core.windows import from_ms, iso_z
from aifinops.store import lease as stored


@dataclass(frozen=True)
class Lease:
    """A lease as `me` sees it at `at`: who holds it (None: no one, or its time ran out),
    and whether that is `me`."""

    name: str
    me: str
    holder: str | None
    acquired: datetime | None
    expires: datetime | None
    at: datetime

    @property
    def held(self) -> bool:
        return self.holder is not None and self.holder == self.me

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "holder": self.holder, "held": self.held,
                "this_replica": self.me, "acquired_at": iso_z(self.acquired),
                "expires_at": iso_z(self.expires), "checked_at": iso_z(self.at)}  # fmt: skip


class Leases:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def take(self, name: str, me: str, seconds: float, *, force: bool = False) -> Lease:
        """Take or renew the lease for `seconds` from now; what it is after (held by `me`,
        or by the other holder whose time still runs). `force`: taken whoever holds it (a
        DuckDB file, which one server at a time serves: another holder is one that died)."""
        now_ms = self.ctx.now_ms()
        stored.take(self.ctx.store, name, me, now_ms, int(seconds * 1000), force=force)
        return self._seen(name, me, now_ms)

    def release(self, name: str, me: str) -> bool:
        return stored.release(self.ctx.store, name, me)

    def get(self, name: str, me: str) -> Lease:
        return self._seen(name, me, self.ctx.now_ms())

    def _seen(self, name: str, me: str, now_ms: int) -> Lease:
        row = stored.held(self.ctx.store, name)
        if row is None or row["expires_ms"] <= now_ms:
            return Lease(name, me, None, None, None, from_ms(now_ms))
        return Lease(name, me, row["holder"], from_ms(row["acquired_ms"]),
                     from_ms(row["expires_ms"]), from_ms(now_ms))  # fmt: skip
