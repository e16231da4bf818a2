"""What every part of the service shares: the settings, the clock, and the store (opened
on first use, so that a command that never reads it never opens it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from aifinops.config import Settings
from aifinops.store.db import Store


class AppContext:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep or time.sleep
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.db)
        return self._store

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
