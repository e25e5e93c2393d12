"""Activities: stored once each, anonymous ones kept until their visitor identifies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class StoredActivity:
    id: UUID
    lead_id: UUID | None
    visitor_id: str | None
    activity_type: str
    occurred_at: datetime
    recorded_at: datetime
    order_id: str | None
    details: dict[str, Any]


def _activity(row: Any) -> StoredActivity:
    return StoredActivity(
        row["id"],
        row["lead_id"],
        row["visitor_id"],
        row["activity_type"],
        row["occurred_at"],
        row["recorded_at"],
        row["order_id"],
        row["details"],
    )


async def insert_activity(
    conn: asyncpg.Connection, activity: StoredActivity, form_id: str | None
) -> bool:
    """False when it is stored already (same id) or is a purchase whose order counted."""
    inserted = await conn.fetchval(
        """INSERT INTO activities (id, lead_id, visitor_id, form_id, activity_type,
               occurred_at, recorded_at, order_id, details, emitted_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8, $9,
                   CASE WHEN $2::uuid IS NULL THEN NULL ELSE $7::timestamptz END)
           ON CONFLICT DO NOTHING RETURNING true""",
        activity.id,
        activity.lead_id,
        activity.visitor_id,
        form_id,
        activity.activity_type,
        activity.occurred_at,
        activity.recorded_at,
        activity.order_id,
        activity.details,
    )
    return bool(inserted)


async def leads_of_visitors(conn: asyncpg.Connection, visitor_ids: list[str]) -> dict[str, UUID]:
    rows = await conn.fetch(
        "SELECT visitor_id, lead_id FROM visitors WHERE visitor_id = ANY($1::text[])", visitor_ids
    )
    return {r["visitor_id"]: r["lead_id"] for r in rows}


async def leads_by_email(conn: asyncpg.Connection, emails: list[str]) -> dict[str, UUID]:
    rows = await conn.fetch("SELECT email, id FROM leads WHERE email = ANY($1::text[])", emails)
    return {r["email"]: r["id"] for r in rows}


async def existing_leads(conn: asyncpg.Connection, lead_ids: list[UUID]) -> set[UUID]:
    rows = await conn.fetch(
        "SELECT id FROM leads WHERE id = ANY($1::uuid[]) AND erased_at IS NULL", lead_ids
    )
    return {r["id"] for r in rows}


async def claim_pending(
    conn: asyncpg.Connection, visitor_id: str, lead_id: UUID
) -> list[StoredActivity]:
    """The visitor's anonymous activities, now the lead's, in the order they happened."""
    rows = await conn.fetch(
        """UPDATE activities SET lead_id = $2, emitted_at = now()
           WHERE visitor_id = $1 AND lead_id IS NULL
           RETURNING id, lead_id, visitor_id, activity_type, occurred_at, recorded_at,
                     order_id, details""",
        visitor_id,
        lead_id,
    )
    return sorted((_activity(r) for r in rows), key=lambda a: (a.occurred_at, str(a.id)))
