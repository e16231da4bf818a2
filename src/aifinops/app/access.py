"""Who may use the server: API tokens with a role (`viewer` reads, `admin` also writes),
kept as hashes (core/access.py), and the audit log of what was written, by whom, when."""

from __future__ import annotations

import secrets
from typing import Any

from aifinops.app.context import AppContext
from aifinops.core.access import PREFIX, ROLES, Caller, token_hash
from aifinops.core.windows import iso_z
from aifinops.errors import UsageError
from aifinops.store import state


class Access:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def create(self, name: str, role: str) -> str:
        """A new token for `name` with `role`: returned once, stored only as its hash."""
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}", where="--role", hint=", ".join(ROLES))
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UsageError(f"bad token name {name!r}", where="--name",
                             hint="letters, digits, '-', '_' and '.'")  # fmt: skip
        token = PREFIX + secrets.token_urlsafe(32)
        if not state.add_token(self.ctx.store, name, role, token_hash(token), self.ctx.now_ms()):
            raise UsageError(f"a token named {name!r} exists", where="--name",
                             hint=f"revoke it first (aifinops token revoke {name})")  # fmt: skip
        return token

    def revoke(self, name: str) -> None:
        if not state.revoke_token(self.ctx.store, name, self.ctx.now_ms()):
            raise UsageError(f"no live token named {name!r}", where="token revoke",
                             hint="aifinops token list")  # fmt: skip

    def listed(self) -> list[dict[str, Any]]:
        """Every token's name, role and dates (never its hash)."""
        return [
            {"name": t["name"], "role": t["role"], "created": iso_z(t["created_ms"]),
             "revoked": iso_z(t["revoked_ms"])}
            for t in state.tokens(self.ctx.store)
        ]  # fmt: skip

    def live(self) -> list[tuple[str, str, str]]:
        """(name, role, hash) of every token not revoked."""
        return [(t["name"], t["role"], t["token_hash"])
                for t in state.tokens(self.ctx.store) if t["revoked_ms"] is None]  # fmt: skip

    def audit(self, caller: Caller, action: str, target: str | None, status: int,
              detail: str | None = None) -> None:  # fmt: skip
        state.audit(self.ctx.store, {"ts_ms": self.ctx.now_ms(), "actor": caller.name,
                                     "role": caller.role, "action": action, "target": target,
                                     "status": status, "detail": detail})  # fmt: skip

    def audit_log(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        rows = state.audit_entries(self.ctx.store, limit, offset)
        return [{**r, "at": iso_z(r.pop("ts_ms"))} for r in rows]
