"""Idempotency keys: a retried request with the same key and body gets the first answer."""

from __future__ import annotations

from typing import Any

import asyncpg


class KeyReused(Exception):
    """The key was used before with a different body."""


async def claim(
    conn: asyncpg.Connection, scope: str, key: str, body_sha256: str
) -> dict[str, Any] | None:
    """None when the key is new (claimed in this transaction); else the stored answer.

    A concurrent request with the same key waits on the row until the first one commits.
    """
    inserted = await conn.fetchval(
        """INSERT INTO idempotency_keys (scope, key, body_sha256) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        scope,
        key,
        body_sha256,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT body_sha256, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    if row is None or row["response"] is None:
        return None  # expired and purged in between: treat as new
    if row["body_sha256"] != body_sha256:
        raise KeyReused(key)
    response: dict[str, Any] = row["response"]
    return response


async def remember(conn: asyncpg.Connection, scope: str, key: str, response: Any) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET response = $3 WHERE scope = $1 AND key = $2",
        scope,
        key,
        response,
    )


async def purge_expired(conn: asyncpg.Connection, hours: float) -> int:
    deleted: str = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        hours * 3600,
    )
    return int(deleted.split()[-1])
