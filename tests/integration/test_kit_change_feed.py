"""The kit's change feed on the real PostgreSQL: NOTIFY moves it at commit (not before, not
after a rollback), LISTEN is open only while someone watches, and a dropped LISTEN turns
into polls until it is back."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from funnel_servicekit.live import NOTIFY_CHANGED_SQL, ChangeFeed, changed_channel
from tests.integration.kit_support import eventually

pytestmark = pytest.mark.integration

SCHEMA = "public"


async def _listeners(conn: asyncpg.Connection) -> int:
    """Sessions of this database waiting in LISTEN (idle, their last statement a LISTEN)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
    )


async def test_notify_moves_the_feed_at_commit_only(fresh_dsn: str) -> None:
    # A fallback far beyond the test: only NOTIFY can move the version.
    feed = ChangeFeed(fresh_dsn, SCHEMA, changed_channel(SCHEMA), fallback_seconds=600)
    writer = await asyncpg.connect(fresh_dsn)
    try:
        assert await _listeners(writer) == 0  # nobody watches: no LISTEN connection
        async with feed.watching("k"):
            await eventually(lambda: asyncio.sleep(0, feed.listening), bool, what="LISTEN up")
            assert await _listeners(writer) == 1
            start = feed.version

            async with writer.transaction():
                await writer.execute(f"SELECT {NOTIFY_CHANGED_SQL}")
                # Not committed yet: nothing is told.
                assert not await feed.wait_past(start, timeout=0.5)
            assert await feed.wait_past(start, timeout=10)
            after_commit = feed.version

            tx = writer.transaction()
            await tx.start()
            await writer.execute(f"SELECT {NOTIFY_CHANGED_SQL}")
            await tx.rollback()
            assert not await feed.wait_past(after_commit, timeout=0.5)  # rolled back: silent

            # Another schema's commits are another channel's.
            await writer.execute("SELECT pg_notify($1, '')", changed_channel("elsewhere"))
            assert not await feed.wait_past(after_commit, timeout=0.5)
        # The last watcher gone: the LISTEN connection closes.
        await eventually(lambda: _listeners(writer), lambda n: n == 0, timeout=10)
    finally:
        await writer.close()


async def test_a_dropped_listen_turns_into_polls_until_it_is_back(fresh_dsn: str) -> None:
    feed = ChangeFeed(
        fresh_dsn, SCHEMA, changed_channel(SCHEMA), fallback_seconds=0.2, retry_seconds=0.2
    )
    admin = await asyncpg.connect(fresh_dsn)
    try:
        async with feed.watching("k"):
            await eventually(lambda: asyncio.sleep(0, feed.listening), bool, what="LISTEN up")
            quiet = feed.version
            await asyncio.sleep(1.0)
            assert feed.version == quiet  # listening: no change, no wake-up
            # The database ends the LISTEN session (as a restart would).
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            )
            assert ended == 1
            # Watchers are woken (the drop, then polls) and the LISTEN comes back.
            assert await feed.wait_past(quiet, timeout=10)
            await eventually(lambda: _listeners(admin), lambda n: n == 1, timeout=10)
            back = feed.version
            await writer_notify(fresh_dsn)
            assert await feed.wait_past(back, timeout=10)
    finally:
        await admin.close()


async def writer_notify(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"SELECT {NOTIFY_CHANGED_SQL}")
    finally:
        await conn.close()


async def test_while_listening_the_feed_still_looks_again_now_and_then(fresh_dsn: str) -> None:
    """A LISTEN connection that died without a word (no keepalive to tell) cannot leave a
    watcher stale for longer than `listening_poll_seconds`."""
    feed = ChangeFeed(
        fresh_dsn,
        SCHEMA,
        changed_channel(SCHEMA),
        fallback_seconds=0.1,
        listening_poll_seconds=0.5,
    )
    async with feed.watching("k"):
        await eventually(lambda: asyncio.sleep(0, feed.listening), bool, what="LISTEN up")
        start = feed.version
        await asyncio.sleep(1.6)
        assert feed.listening
        assert 2 <= feed.version - start <= 4  # about every 0.5 s, not every 0.1 s
