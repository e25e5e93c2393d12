"""The pool's release without the reset query: open transactions still end, nothing leaks."""

from __future__ import annotations

import pytest

from funnel_servicekit.db import create_pool

pytestmark = pytest.mark.integration


async def test_without_reset_a_released_connection_keeps_no_transaction(fresh_dsn: str) -> None:
    pool = await create_pool(fresh_dsn, "public", min_size=1, max_size=1, reset_on_release=False)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE marks (n int)")
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            # A session setting survives (that is the round trip saved)...
            await conn.execute("SET statement_timeout = '7s'")
            # ...but a transaction left open by a failing handler is rolled back on release.
            tx = conn.transaction()
            await tx.start()
            await conn.execute("INSERT INTO marks VALUES (1)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid  # the same connection
            assert await conn.fetchval("SHOW statement_timeout") == "7s"
            assert await conn.fetchval("SELECT count(*) FROM marks") == 0
            assert not conn.is_in_transaction()
    finally:
        await pool.close()


async def test_with_reset_a_released_connection_is_reset(fresh_dsn: str) -> None:
    pool = await create_pool(fresh_dsn, "public", min_size=1, max_size=1, reset_on_release=True)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET statement_timeout = '7s'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "0"
    finally:
        await pool.close()


async def test_by_default_a_released_connection_is_not_reset(fresh_dsn: str) -> None:
    """The kit's default (decision 0070): no reset query, so no code may leave session state
    on a pooled connection; an open transaction still ends (the test above)."""
    pool = await create_pool(fresh_dsn, "public", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET statement_timeout = '7s'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "7s"
    finally:
        await pool.close()
