"""API tokens: who a caller is and what a role may do (pure: hashing, no I/O).

A token is 32 random bytes (URL-safe text, prefixed `afo_` so it is recognisable in a leak
scan); the store keeps its SHA-256, which is enough for a secret of that entropy (no
password stretching is needed: nobody can guess 256 bits). A token given to the server is
hashed and compared with every stored hash in constant time (`hmac.compare_digest`, no
early exit), so the time taken says nothing about how close a guess came."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

ROLES = ("viewer", "admin")
PREFIX = "afo_"


@dataclass(frozen=True)
class Caller:
    """Whoever made a request: a token's name and role, or `anonymous`."""

    name: str
    role: str | None

    def may(self, role: str) -> bool:
        """Whether this caller has `role` (an admin may do what a viewer may)."""
        if self.role is None:
            return False
        return ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Caller("anonymous", None)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def identify(token: str | None, live: list[tuple[str, str, str]]) -> Caller | None:
    """The caller a presented token belongs to, or None for a token that is not one of
    `live` (name, role, hash): every stored hash is compared, in constant time each."""
    if not token:
        return None
    given = token_hash(token)
    found: Caller | None = None
    for name, role, stored in live:
        if hmac.compare_digest(given, stored):
            found = Caller(name, role)
    return found
