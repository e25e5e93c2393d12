"""The asyncpg pool: JSON codecs, the service's schema on the search path."""

from __future__ import annotations

import json

import asyncpg

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


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    reset_on_release: bool = False,
) -> asyncpg.Pool:
    """A pool whose connections see the service's own schema first.

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
        server_settings={"search_path": f"{schema},public", "application_name": schema},
        command_timeout=30,
    )
    assert pool is not None
    return pool


async def connect(dsn: str, schema: str) -> asyncpg.Connection:
    """One connection with the same settings as the pool's (for LISTEN and migrations)."""
    conn = await asyncpg.connect(
        dsn, server_settings={"search_path": f"{schema},public", "application_name": schema}
    )
    await _init_connection(conn)
    return conn
