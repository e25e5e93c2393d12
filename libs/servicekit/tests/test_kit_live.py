"""The kit's live parts that need no database: shared reads per key and version, the HTTP
latency of an event stream, and the server's closing flag."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import MutableMapping
from typing import Any

import pytest

from funnel_servicekit import live, metrics
from funnel_servicekit.http_metrics import HttpMetricsMiddleware
from funnel_servicekit.live import ChangeFeed


def _feed() -> ChangeFeed:
    # Nothing answers this address: the feed polls (its fallback) instead of listening.
    return ChangeFeed(
        "postgresql://nobody@127.0.0.1:9/none", "s", "c", fallback_seconds=600, retry_seconds=600
    )


async def test_watchers_of_one_key_share_one_read_per_version() -> None:
    feed = _feed()
    reads = 0
    release = asyncio.Event()

    async def read() -> int:
        nonlocal reads
        reads += 1
        mine = reads
        await release.wait()
        return mine

    async with feed.watching("a"), feed.watching("a"), feed.watching("b"):
        version = feed.version
        first = [asyncio.create_task(feed.read_at(k, version, read)) for k in ("a", "a", "b")]
        await asyncio.sleep(0.05)
        assert reads == 2  # one read for "a"'s two watchers, one for "b"
        release.set()
        assert sorted(await asyncio.gather(*first)) == [1, 1, 2]
        # The same version again: no new read; a later one: a new read.
        assert await feed.read_at("a", version, read) == 1
        feed.bump()
        assert await feed.read_at("a", feed.version, read) == 3

        async def failing() -> int:
            raise OSError("away")

        feed.bump()
        with pytest.raises(OSError, match="away"):
            await feed.read_at("b", feed.version, failing)
        # A failed read is tried again by the next one to ask, at the same version.
        assert await feed.read_at("b", feed.version, read) == 4
    assert feed.watchers == 0


async def test_a_watcher_going_away_does_not_cancel_the_read_others_wait_for() -> None:
    feed = _feed()
    release = asyncio.Event()

    async def read() -> str:
        await release.wait()
        return "body"

    async with feed.watching("a"), feed.watching("a"):
        leaving = asyncio.create_task(feed.read_at("a", 0, read))
        staying = asyncio.create_task(feed.read_at("a", 0, read))
        await asyncio.sleep(0)
        leaving.cancel()
        release.set()
        assert await staying == "body"


async def test_wait_past_returns_at_a_bump_and_times_out_without_one() -> None:
    feed = _feed()
    start = feed.version
    assert not await feed.wait_past(start, timeout=0.05)
    waiter = asyncio.create_task(feed.wait_past(start, timeout=10))
    await asyncio.sleep(0)
    feed.bump()
    assert await waiter
    assert await feed.wait_past(start, timeout=0)  # already past: at once


async def test_an_event_stream_is_timed_to_its_start_not_its_end() -> None:
    done = asyncio.Event()

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await asyncio.sleep(0.3)  # open a while, as a stream is
        await done.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    class Route:
        path = "/v1/test/stream-timing"

    app = HttpMetricsMiddleware(stream)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": "GET", "path": Route.path, "headers": [], "route": Route}
    done.set()
    await app(scope, receive, send)
    histogram = metrics.HTTP_LATENCY.labels("GET", Route.path)
    total = histogram._sum.get()
    assert sent[0]["status"] == 200
    assert 0 <= total < 0.25  # observed at the start, not after the 0.3 s it stayed open


def test_the_server_closing_flag() -> None:
    assert not live.is_closing()
    live.server_closing()
    try:
        assert live.is_closing()
    finally:
        live._closing = False


async def test_without_listen_the_feed_polls_every_fallback_period() -> None:
    feed = ChangeFeed(
        "postgresql://nobody@127.0.0.1:9/none", "s", "c", fallback_seconds=0.1, retry_seconds=600
    )
    async with feed.watching("a"):
        start = feed.version
        await asyncio.sleep(0.75)
        assert not feed.listening
        assert feed.version - start >= 3  # about every 0.1 s: watchers look again
    stopped = feed.version
    await asyncio.sleep(0.3)
    assert feed.version == stopped  # nobody watches: no polls


async def test_a_failed_read_nobody_awaits_any_more_is_not_reported_unretrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        feed = _feed()
        fail = asyncio.Event()

        async def read() -> int:
            await fail.wait()
            raise OSError("away")

        async with feed.watching("a"):
            waiter = asyncio.create_task(feed.read_at("a", feed.version, read))
            await asyncio.sleep(0)
            waiter.cancel()  # the only watcher goes away mid-read
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        fail.set()
        await asyncio.sleep(0.01)
        gc.collect()
        await asyncio.sleep(0)
        assert [c["message"] for c in reported if "never retrieved" in c["message"]] == []
    finally:
        loop.set_exception_handler(None)
