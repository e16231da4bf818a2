"""What every part of the service shares: the settings, the clock, and the store (opened
on first use, so that a command that never reads it never opens it; read-only for a
service made to read, so that reads run while `collect` writes between its runs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from aifinops.config import Settings
from aifinops.core.store_url import redact
from aifinops.store.db import Store


class AppContext:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
        *,
        read_only: bool = False,
    ):
        self.settings = settings
        self.read_only = read_only
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep or time.sleep
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            db = self.settings.db
            self._store = Store.for_reads(db) if self.read_only else Store(db)
        return self._store

    @property
    def store_name(self) -> str:
        """The store as messages name it: the file, or the server's URL without a password."""
        return redact(self.settings.db)

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def close(self) -> None:
        """Close the store (the next use opens it again): `collect` closes it before it
        sleeps, so that its write lock is held only while a run writes."""
        if self._store is not None:
            self._store.close()
            self._store = None
