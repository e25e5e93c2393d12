"""The rebuild's own SQL: the inbox row of each event fed again, and the outbox it leaves."""

from __future__ import annotations

import asyncpg

from funnel_contracts import Envelope


async def outbox_high_water(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))


async def drop_outbox_after(pool: asyncpg.Pool, last_id: int) -> None:
    """Remove what was queued after `last_id` (a rebuild does not publish again)."""
    await pool.execute("DELETE FROM outbox WHERE id > $1", last_id)


async def claim(conn: asyncpg.Connection, envelope: Envelope) -> bool:
    """The event's inbox row; False when it was fed already (a duplicate)."""
    fresh = await conn.fetchval(
        "INSERT INTO inbox (source, event_id, event_type) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        envelope.source,
        envelope.id,
        envelope.type,
    )
    return bool(fresh)
