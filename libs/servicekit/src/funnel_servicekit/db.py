"""The asyncpg pool: JSON codecs, the service's schema on the search path, generic plans."""

from __future__ import annotations

import json
from typing import Literal

import asyncpg

PlanCacheMode = Literal["force_generic_plan", "auto", "force_custom_plan"]
# A service's statements are fixed texts over keys and arrays of keys: the same plan suits
# every call, so each is planned once per connection rather than on every call
# (docs/decisions/0083).
GENERIC_PLANS: PlanCacheMode = "force_generic_plan"
# What PostgreSQL assumes a page read out of order costs, against 1.0 for a page read in
# sequence. Its default, 4, prices a disk's seek; a service's hot tables are in memory (or on
# SSD), where probing an index for a batch's few keys is far cheaper than reading the table.
# With 4, the plan a statement keeps (made for an array of ten keys) read whole tables of a
# few thousand rows for each batch (docs/decisions/0091).
RANDOM_PAGE_COST = 1.1

# The database cannot be reached now, or dropped the session: the same work may well succeed
# shortly. The inbox retries a batch in place on these; an API answers 503 with Retry-After.
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    TimeoutError,  # a pool acquire or a query past command_timeout
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # starting up, shutting down
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed", "closed in the middle of operation"
    # What asyncpg now and then raises instead of InterfaceError when the server ends the
    # session in the middle of a transaction (MagicStack/asyncpg#784).
    asyncpg.InternalClientError,
)


async def wrote_a_row(conn: asyncpg.Connection, sql: str, *args: object) -> bool:
    """Runs a statement ending in `RETURNING true`: True when it wrote its row (the INSERT met
    no conflict, the UPDATE or DELETE matched), False when it wrote nothing."""
    return bool(await conn.fetchval(sql, *args))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query: asyncpg still rolls back an open transaction and drops listeners."""


async def plan_each_call(conn: asyncpg.Connection) -> None:
    """Until the end of the caller's transaction, plan each statement for its own arguments.

    For statements that join arrays of many keys to tables that grow from empty: a generic
    plan made at the first call on a nearly empty table sizes that table from its few pages
    and may read all of it, for good, once it has grown (until an ANALYZE replans it). A
    plan made for each call sees the array's length and the table's size at that moment:
    a fraction of a millisecond a statement (docs/decisions/0090)."""
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")


def server_settings(
    schema: str,
    plan_cache_mode: PlanCacheMode = GENERIC_PLANS,
    random_page_cost: float = RANDOM_PAGE_COST,
) -> dict[str, str]:
    """A service connection's session settings: its schema first on the search path, its
    name in pg_stat_activity, and how PostgreSQL plans its prepared statements (when, and
    what an index probe costs: `RANDOM_PAGE_COST`).

    asyncpg prepares every statement. With PostgreSQL's default (`auto`) a statement whose
    arguments are arrays (a batch's ids, an outbox batch) is planned again on every call
    whenever the plan made for the actual arrays looks cheaper than the generic one, which it
    nearly always does for short arrays; `force_generic_plan` plans it once per connection
    (and again after the table's statistics change)."""
    return {
        "search_path": f"{schema},public",
        "application_name": schema,
        "plan_cache_mode": plan_cache_mode,
        "random_page_cost": str(random_page_cost),
    }


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    reset_on_release: bool = False,
    plan_cache_mode: PlanCacheMode = GENERIC_PLANS,
    random_page_cost: float = RANDOM_PAGE_COST,
) -> asyncpg.Pool:
    """A pool whose connections see the service's own schema first (`server_settings`).

    `reset_on_release=False` (the default) skips asyncpg's reset query (RESET ALL, UNLISTEN *,
    advisory unlock, CLOSE ALL) on every release, a round trip per use: no code of the kit or
    the services sets session state on pooled connections (transaction-level locks and
    settings are fine; an open transaction is still rolled back).
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if reset_on_release else _keep_session,
        server_settings=server_settings(schema, plan_cache_mode, random_page_cost),
        command_timeout=30,
    )
    assert pool is not None
    return pool


async def connect(
    dsn: str,
    schema: str,
    *,
    plan_cache_mode: PlanCacheMode = GENERIC_PLANS,
    random_page_cost: float = RANDOM_PAGE_COST,
) -> asyncpg.Connection:
    """One connection with the same settings as the pool's (for LISTEN and migrations)."""
    conn = await asyncpg.connect(
        dsn, server_settings=server_settings(schema, plan_cache_mode, random_page_cost)
    )
    await _init_connection(conn)
    return conn
