"""Erasure: personal data removed, data keys shredded, the request recorded; key lookups."""

from __future__ import annotations

from uuid import UUID

import asyncpg


async def lead_ids_by_phone_alone(conn: asyncpg.Connection, phone: str) -> list[UUID]:
    """Leads whose identity is this phone (no email): a lead with an email is that email's."""
    rows = await conn.fetch(
        "SELECT id FROM leads WHERE phone = $1 AND email IS NULL FOR UPDATE", phone
    )
    return [r["id"] for r in rows]


async def with_merged(conn: asyncpg.Connection, lead_ids: list[UUID]) -> list[UUID]:
    """These leads, the ones they were merged into and the ones merged into them, locked."""
    rows = await conn.fetch(
        """WITH found AS (
               SELECT DISTINCT coalesce(merged_into, id) AS id FROM leads
               WHERE id = ANY($1::uuid[]))
           SELECT l.id FROM leads l, found f
           WHERE l.id = f.id OR l.merged_into = f.id ORDER BY l.id FOR UPDATE OF l""",
        lead_ids,
    )
    return [r["id"] for r in rows]


async def erase_leads(conn: asyncpg.Connection, lead_ids: list[UUID]) -> None:
    """Remove every piece of personal data of these leads; ids and counts stay."""
    await conn.execute(
        """UPDATE leads SET email = NULL, phone = NULL, first_name = NULL, last_name = NULL,
               consent = NULL, custom_fields = '{}', first_touch = '{}', last_touch = '{}',
               locale = NULL, time_zone = NULL, consent_changes = '{}', erased_at = now(),
               updated_at = now()
           WHERE id = ANY($1::uuid[])""",
        lead_ids,
    )
    # The search index finds them no more (docs/decisions/0024).
    await conn.execute("DELETE FROM lead_search_terms WHERE lead_id = ANY($1::uuid[])", lead_ids)
    await conn.execute(
        """UPDATE submissions SET landing_page = NULL, referrer = NULL, user_agent = NULL,
               ip_truncated = NULL, custom_fields = '{}', qualification = '{}', consent = NULL,
               utm = '{}', visitor_id = NULL
           WHERE lead_id = ANY($1::uuid[])""",
        lead_ids,
    )
    await conn.execute(
        """UPDATE activities SET details = '{}', visitor_id = NULL
           WHERE lead_id = ANY($1::uuid[])""",
        lead_ids,
    )
    await conn.execute("DELETE FROM visitors WHERE lead_id = ANY($1::uuid[])", lead_ids)


async def shred(conn: asyncpg.Connection, lead_ids: list[UUID]) -> int:
    """Delete the keys: what was sealed with them can never be read again."""
    deleted: str = await conn.execute(
        "DELETE FROM subject_keys WHERE lead_id = ANY($1::uuid[])", lead_ids
    )
    return int(deleted.split()[-1])


async def record_erasure(
    conn: asyncpg.Connection,
    request_id: UUID,
    email_sha256: str,
    lead_ids: list[UUID],
    requested_by: str,
) -> None:
    await conn.execute(
        """INSERT INTO erasure_requests (id, email_sha256, lead_ids, requested_by)
           VALUES ($1, $2, $3, $4)""",
        request_id,
        email_sha256,
        lead_ids,
        requested_by,
    )


async def data_key(conn: asyncpg.Connection, lead_id: UUID) -> tuple[bool, bytes | None] | None:
    """(erased, its data key) of the lead; None when there is no such lead."""
    row = await conn.fetchrow(
        """SELECT l.erased_at, k.data_key FROM leads l
           LEFT JOIN subject_keys k ON k.lead_id = l.id WHERE l.id = $1""",
        lead_id,
    )
    if row is None:
        return None
    return row["erased_at"] is not None, row["data_key"]


async def data_keys(
    conn: asyncpg.Connection, lead_ids: list[UUID]
) -> dict[UUID, tuple[bool, bytes | None]]:
    """`data_key` for many leads in one statement; a lead that does not exist is absent."""
    rows = await conn.fetch(
        """SELECT l.id, l.erased_at, k.data_key FROM leads l
           LEFT JOIN subject_keys k ON k.lead_id = l.id WHERE l.id = ANY($1::uuid[])""",
        lead_ids,
    )
    return {r["id"]: (r["erased_at"] is not None, r["data_key"]) for r in rows}
