"""The snapshot, pushed: each change the projection commits reaches the open streams at once.

The projection's write statement notifies its schema's change channel at commit; the
process's `ChangeFeed` (the runtime's `live`) listens while a stream is open, on every
replica, whichever replica committed. A stream sends the snapshot when it opens and again
after each commit that changed it; the streams of one funnel share one snapshot query per
change, however many dashboards watch it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import Gauge

from funnel_servicekit.db import DATABASE_UNREACHABLE
from funnel_servicekit.live import ChangeFeed, is_closing

log = logging.getLogger(__name__)
Body = dict[str, Any]
_AWAY: tuple[type[Exception], ...] = (*DATABASE_UNREACHABLE, OSError)
STREAMS = Gauge("funnel_snapshot_streams", "Snapshot streams open in this process")


async def snapshot_events(
    feed: ChangeFeed,
    funnel_id: str,
    read: Callable[[], Awaitable[Body]],
    *,
    retry_seconds: float = 1.0,
) -> AsyncIterator[str]:
    """The funnel's snapshot as JSON, now and after each change, until the server closes."""
    key = ("snapshot", funnel_id)
    with STREAMS.track_inprogress():
        async with feed.watching(key):
            sent: Body | None = None
            away = False
            while not is_closing():
                version = feed.version
                try:
                    body: Body = await feed.read_at(key, version, read)
                except _AWAY:
                    if not away:  # once per outage and stream
                        log.warning("snapshot stream: the database is away; trying again")
                    away = True
                    await asyncio.sleep(retry_seconds)
                    continue
                away = False
                if body != sent:
                    sent = body
                    yield json.dumps(body, separators=(",", ":"))
                await feed.wait_past(version)
