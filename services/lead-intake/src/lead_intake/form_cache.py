"""Forms read on the public path, kept a few seconds in process memory.

Every public request needs its form before anything else (CORS, rate limits, fields); a
short cache spares the database a query per post. Registry writes in this process clear
their entry at once; other replicas see a change within `ttl_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from lead_intake.forms import Form

MAX_ENTRIES = 10_000


class FormCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Form | None]] = {}

    async def get(self, form_id: str, load: Callable[[str], Awaitable[Form | None]]) -> Form | None:
        now = time.monotonic()
        hit = self._entries.get(form_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        form = await load(form_id)
        if self.ttl > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()  # unknown ids from a flood must not grow memory
            self._entries[form_id] = (now + self.ttl, form)
        return form

    def forget(self, form_id: str) -> None:
        self._entries.pop(form_id, None)
