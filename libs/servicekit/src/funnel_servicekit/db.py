"""The asyncpg pool: JSON codecs, the service's schema on the search path."""

from __future__ import annotations

import json

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections see the service's own schema first."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
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
