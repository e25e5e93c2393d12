"""What a route needs to push changes to its clients instead of being polled (server-sent events).

- `ChangeFeed`: a version number that goes up on every NOTIFY on a schema's change channel
  (`changed_channel`), which a writer sends in the transaction that changed the data
  (delivered at its commit, to every replica). The LISTEN connection is open only while
  someone watches; while it is down (a database restart) the version goes up every
  `fallback_seconds`, so watchers look again instead of missing a change, and while it is
  up, every `listening_poll_seconds` all the same (a connection that died without a word,
  no keepalive to tell, cannot leave a watcher stale for longer). Watchers of the
  same key share one read per version (`read_at`): a change costs one query per key
  watched, however many clients watch it.
- `server_closing()` / `is_closing()`: the serve command marks the process as closing when
  it is asked to stop, before uvicorn waits for open connections to finish; a stream ends
  within its wait (`WAIT_SECONDS`) instead of holding the shutdown until its timeout.

The kit's load shedding frees a stream's slot once it started, and its HTTP latency
histogram observes a stream when it started (both by the `text/event-stream` content type).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from funnel_servicekit.listen import Listener

EVENT_STREAM = b"text/event-stream"
# A writer's NOTIFY, in SQL, to its own schema's change channel (`changed_channel`).
NOTIFY_CHANGED_SQL = "pg_notify(current_schema() || '_changed', '')"
WAIT_SECONDS = 1.0  # a stream checks `is_closing()` at least this often

_closing = False


def server_closing() -> None:
    """The process was asked to stop: open streams end."""
    global _closing
    _closing = True


def is_closing() -> bool:
    return _closing


def changed_channel(schema: str) -> str:
    """The channel `NOTIFY_CHANGED_SQL` notifies when it runs in `schema`."""
    return f"{schema}_changed"


def is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    """True for an ASGI response start whose content type is an event stream."""
    return any(
        name == b"content-type" and value.startswith(EVENT_STREAM) for name, value in headers
    )


@dataclass
class _Key:
    watchers: int = 0
    version: int = -1
    read: asyncio.Future[Any] | None = None

    def stale(self, version: int) -> bool:
        read = self.read
        return (
            read is None
            or self.version < version
            or (read.done() and (read.cancelled() or read.exception() is not None))
        )


class ChangeFeed:
    """A version number that NOTIFY on `channel` moves on, while anyone watches."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        channel: str,
        *,
        fallback_seconds: float = 2.0,
        listening_poll_seconds: float = 30.0,
        retry_seconds: float = 5.0,
    ) -> None:
        self.version = 0
        self.fallback_seconds = fallback_seconds
        self.listening_poll_seconds = listening_poll_seconds
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keys: dict[Hashable, _Key] = {}  # only keys someone watches
        self._last_left = asyncio.Event()
        self._listener = Listener(dsn, schema, channel, self.bump, retry_seconds=retry_seconds)

    @property
    def watchers(self) -> int:
        return sum(k.watchers for k in self._keys.values())

    @property
    def listening(self) -> bool:
        return self._listener.listening

    def bump(self) -> None:
        """Something may have changed: every waiter looks again."""
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @contextlib.asynccontextmanager
    async def watching(self, key: Hashable) -> AsyncIterator[None]:
        """Count a watcher of `key`; the first one opens the LISTEN connection."""
        watched = self._keys.setdefault(key, _Key())
        watched.watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._keep_listening(), name="change-feed")
        try:
            yield
        finally:
            watched.watchers -= 1
            if watched.watchers == 0:
                del self._keys[key]
            if not self._keys:
                self._last_left.set()  # the LISTEN connection closes now

    async def read_at(self, key: Hashable, version: int, read: Callable[[], Awaitable[Any]]) -> Any:
        """`read()` as of `version` or later, once for all the watchers of `key` (a failed
        read is tried again by the next one to ask)."""
        watched = self._keys[key]
        if watched.stale(version):
            watched.version = version
            watched.read = asyncio.ensure_future(read())
            # Its error is read here even when no watcher is left to await it (each one's
            # shield lets go when that watcher is cancelled).
            watched.read.add_done_callback(_retrieved)
        assert watched.read is not None
        # Shielded: a watcher going away does not cancel the read the others wait for.
        return await asyncio.shield(watched.read)

    async def wait_past(self, version: int, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until the version moved past `version` (at most `timeout`): whether it did."""
        changed = self._changed
        if self.version <= version:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        return self.version > version

    async def _keep_listening(self) -> None:
        polled = time.monotonic()
        try:
            while True:
                if not self._keys:
                    # In the same step as the check: the next watcher starts a new task.
                    self._task = None
                    return
                self._last_left.clear()
                await self._listener.ensure()
                now = time.monotonic()
                if not self._listener.listening or now - polled >= self.listening_poll_seconds:
                    polled = now
                    self.bump()  # watchers look again (a poll)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._last_left.wait(), self.fallback_seconds)
        finally:
            await self._listener.close()


def _retrieved(read: asyncio.Future[Any]) -> None:
    if not read.cancelled():
        read.exception()
