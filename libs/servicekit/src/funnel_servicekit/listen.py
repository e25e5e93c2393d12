"""A LISTEN connection of its own that comes back after it drops (a database restart).

Loops that are woken by NOTIFY (the outbox relay, the notifier's touch sender) poll as well,
so a missing LISTEN only delays them; `ensure()` opens it again, at most every
`retry_seconds`. It is not a pooled connection: a dropped one would hold a pool slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import asyncpg

from funnel_servicekit.db import connect

log = logging.getLogger(__name__)


class Listener:
    """LISTEN on `channel`; `on_wake()` on each NOTIFY and when the connection drops."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        channel: str,
        on_wake: Callable[[], None],
        *,
        retry_seconds: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.channel = channel
        self.on_wake = on_wake
        self.retry_seconds = retry_seconds
        self._conn: asyncpg.Connection | None = None
        self._next_attempt = 0.0

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up."""
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> None:
        """Open the LISTEN connection when it is down (a failed try waits `retry_seconds`)."""
        if self.listening or time.monotonic() < self._next_attempt:
            return
        await self.close()
        self._conn = await self._listen()
        if self._conn is None:
            self._next_attempt = time.monotonic() + self.retry_seconds

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _listen(self) -> asyncpg.Connection | None:
        conn: asyncpg.Connection | None = None
        try:
            conn = opened = await asyncio.wait_for(connect(self.dsn, self.schema), 10)
            await asyncio.wait_for(opened.add_listener(self.channel, lambda *_: self.on_wake()), 10)
            # A dropped connection wakes the loop, which opens a new one.
            opened.add_termination_listener(lambda *_: self.on_wake())
        except Exception:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            log.warning("LISTEN %s unavailable; polling only until it comes back", self.channel)
            return None
        self.on_wake()  # rows committed before LISTEN took effect: look once more now
        return conn
