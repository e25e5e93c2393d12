"""The kit's connections plan each prepared statement once (decision 0083): a statement over
an array of ids, called again and again with short arrays, as every consumer's batch and
intake's group do. PostgreSQL's own choice (`auto`) plans it anew on almost every call,
which is what the setting is for; PostgreSQL counts both in pg_prepared_statements."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from funnel_servicekit.db import PlanCacheMode, connect, create_pool

pytestmark = pytest.mark.integration

STATEMENT = "SELECT count(*) FROM marks WHERE id = ANY($1::uuid[])"
CALLS = 12


async def _plans(conn: asyncpg.Connection) -> tuple[int, int]:
    """Call STATEMENT with 1..3 ids CALLS times; its (generic, custom) plan counts."""
    for n in range(CALLS):
        assert await conn.fetchval(STATEMENT, [uuid4() for _ in range(1 + n % 3)]) == 0
    row = await conn.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
        STATEMENT,
    )
    assert row is not None
    return row["generic_plans"], row["custom_plans"]


async def _marks(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE marks (id uuid PRIMARY KEY, n int);"
            " INSERT INTO marks SELECT gen_random_uuid(), g FROM generate_series(1, 2000) g;"
            " ANALYZE marks"
        )
    finally:
        await conn.close()


async def test_the_pool_plans_a_statement_over_arrays_once(fresh_dsn: str) -> None:
    await _marks(fresh_dsn)
    pool = await create_pool(fresh_dsn, "public", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            generic, custom = await _plans(conn)
    finally:
        await pool.close()
    assert (generic, custom) == (CALLS, 0)


@pytest.mark.parametrize("mode", ["auto", "force_custom_plan"])
async def test_other_modes_plan_it_again_on_every_call(fresh_dsn: str, mode: PlanCacheMode) -> None:
    """What the setting saves: with PostgreSQL's default the same statement is planned for
    its arguments on every call here (after the first five, whenever the plan for the actual
    short array looks cheaper than the generic one, which it does)."""
    await _marks(fresh_dsn)
    conn = await connect(fresh_dsn, "public", plan_cache_mode=mode)
    try:
        assert await conn.fetchval("SHOW plan_cache_mode") == mode
        generic, custom = await _plans(conn)
    finally:
        await conn.close()
    assert (generic, custom) == (0, CALLS)
