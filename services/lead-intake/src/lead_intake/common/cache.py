"""Forms read on the public path, kept a few seconds in process memory.

Every public request needs its form before anything else (CORS, rate limits, fields); a
short cache spares the database a query per post. Registry writes in this process clear
their entry at once; other replicas see a change within `ttl_seconds`. Generic over what it
keeps, so the runtime can hold it without importing a concept package.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")
MAX_ENTRIES = 10_000


class TtlCache(Generic[V]):
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, V | None]] = {}

    async def get(self, key: str, load: Callable[[str], Awaitable[V | None]]) -> V | None:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load(key)
        if self.ttl > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()  # unknown ids from a flood must not grow memory
            self._entries[key] = (now + self.ttl, value)
        return value

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)
