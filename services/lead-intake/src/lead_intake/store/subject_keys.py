"""Each person's data key: created with the lead, read to seal events, deleted on erasure."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from funnel_contracts.sealed import new_data_key


async def key_for(conn: asyncpg.Connection, lead_id: UUID) -> bytes:
    """The lead's data key, made now if it has none (leads captured before keys existed).

    Inside the caller's transaction, so a key is never used by an event that is not committed.
    """
    # One round trip, no row rewritten when the key exists. Two submissions of one person
    # are serialized earlier on the lead's row, so the plain read sees a key made by another.
    key: bytes | None = await conn.fetchval(
        """WITH made AS (
               INSERT INTO subject_keys (lead_id, data_key) VALUES ($1, $2)
               ON CONFLICT (lead_id) DO NOTHING RETURNING data_key)
           SELECT data_key FROM made
           UNION ALL SELECT data_key FROM subject_keys WHERE lead_id = $1
           LIMIT 1""",
        lead_id,
        new_data_key(),
    )
    if key is None:
        raise LookupError(f"no data key for lead {lead_id}")
    return key


async def existing_key(conn: asyncpg.Connection, lead_id: UUID) -> bytes | None:
    key: bytes | None = await conn.fetchval(
        "SELECT data_key FROM subject_keys WHERE lead_id = $1", lead_id
    )
    return key


async def shred(conn: asyncpg.Connection, lead_ids: list[UUID]) -> int:
    """Delete the keys: what was sealed with them can never be read again."""
    deleted: str = await conn.execute(
        "DELETE FROM subject_keys WHERE lead_id = ANY($1::uuid[])", lead_ids
    )
    return int(deleted.split()[-1])
