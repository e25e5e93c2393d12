"""Ad-platform leads: those waiting for their details, and those captured already."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class PendingLead:
    platform: str
    external_id: str
    form_id: str
    notice: dict[str, Any]
    attempts: int


async def seen(conn: asyncpg.Connection, platform: str, external_id: str) -> UUID | None:
    lead_id: UUID | None = await conn.fetchval(
        "SELECT lead_id FROM platform_leads_seen WHERE platform = $1 AND external_id = $2",
        platform,
        external_id,
    )
    return lead_id


async def mark_seen(
    conn: asyncpg.Connection, platform: str, external_id: str, lead_id: UUID
) -> bool:
    """False when another delivery of the same lead got there first."""
    inserted = await conn.fetchval(
        """INSERT INTO platform_leads_seen (platform, external_id, lead_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        platform,
        external_id,
        lead_id,
    )
    return bool(inserted)


async def add_pending(
    conn: asyncpg.Connection, platform: str, external_id: str, form_id: str, notice: dict[str, Any]
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO pending_platform_leads (platform, external_id, form_id, notice)
           SELECT $1, $2, $3, $4
           WHERE NOT EXISTS (SELECT 1 FROM platform_leads_seen WHERE platform = $1
                             AND external_id = $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        platform,
        external_id,
        form_id,
        notice,
    )
    return bool(inserted)


async def claim_due(
    conn: asyncpg.Connection, platform: str, limit: int, max_attempts: int
) -> list[PendingLead]:
    """Due leads, locked for this transaction (other replicas skip them)."""
    rows = await conn.fetch(
        """SELECT platform, external_id, form_id, notice, attempts FROM pending_platform_leads
           WHERE platform = $1 AND next_attempt_at <= now() AND attempts < $3
           ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        platform,
        limit,
        max_attempts,
    )
    return [
        PendingLead(r["platform"], r["external_id"], r["form_id"], r["notice"], r["attempts"])
        for r in rows
    ]


async def retry_later(
    conn: asyncpg.Connection, lead: PendingLead, error: str, delay_seconds: float
) -> None:
    await conn.execute(
        """UPDATE pending_platform_leads SET attempts = attempts + 1, last_error = $3,
               next_attempt_at = now() + make_interval(secs => $4)
           WHERE platform = $1 AND external_id = $2""",
        lead.platform,
        lead.external_id,
        error[:500],
        delay_seconds,
    )


async def done(conn: asyncpg.Connection, lead: PendingLead) -> None:
    await conn.execute(
        "DELETE FROM pending_platform_leads WHERE platform = $1 AND external_id = $2",
        lead.platform,
        lead.external_id,
    )
