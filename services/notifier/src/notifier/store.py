"""notifier's tables: contacts and the durable touch schedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from notifier.playbooks import TouchPlan


@dataclass(frozen=True)
class DueTouch:
    id: UUID
    lead_id: UUID
    playbook: str
    channel: str
    template: str
    funnel_id: str | None
    stage: str | None
    email: str
    first_name: str | None
    attempts: int


async def upsert_contact(
    conn: asyncpg.Connection, lead_id: UUID, email: str, first_name: str | None
) -> None:
    await conn.execute(
        """INSERT INTO contacts (lead_id, email, first_name) VALUES ($1, $2, $3)
           ON CONFLICT (lead_id) DO UPDATE SET email = excluded.email,
               first_name = excluded.first_name, updated_at = now()""",
        lead_id,
        email,
        first_name,
    )


async def schedule(
    conn: asyncpg.Connection,
    lead_id: UUID,
    plan: TouchPlan,
    *,
    due_at: datetime,
    funnel_id: str | None,
    stage: str | None,
    cause_event_id: str,
) -> bool:
    """Schedule a touch; False when this playbook already touched (or will touch) the lead."""
    inserted = await conn.fetchval(
        """INSERT INTO touches (id, lead_id, playbook, channel, template, funnel_id, stage,
               cause_event_id, due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (lead_id, playbook) DO NOTHING RETURNING true""",
        uuid4(),
        lead_id,
        plan.playbook,
        plan.channel,
        plan.template,
        funnel_id,
        stage,
        cause_event_id,
        due_at,
    )
    return bool(inserted)


async def claim_due(conn: asyncpg.Connection, limit: int, lease_seconds: int) -> list[DueTouch]:
    """Lease due touches whose contact is known; SKIP LOCKED lets replicas share the work.

    A touch whose lease ran out (its sender died mid-send) is claimed again.
    """
    rows = await conn.fetch(
        """UPDATE touches t SET status = 'sending', attempts = t.attempts + 1,
               lease_until = now() + make_interval(secs => $2)
           FROM contacts c
           WHERE t.id IN (
               SELECT t2.id FROM touches t2 JOIN contacts c2 ON c2.lead_id = t2.lead_id
               WHERE (t2.status = 'scheduled' AND t2.due_at <= now())
                  OR (t2.status = 'sending' AND t2.lease_until < now())
               ORDER BY t2.due_at LIMIT $1 FOR UPDATE OF t2 SKIP LOCKED)
             AND c.lead_id = t.lead_id
           RETURNING t.id, t.lead_id, t.playbook, t.channel, t.template, t.funnel_id, t.stage,
               c.email, c.first_name, t.attempts""",
        limit,
        lease_seconds,
    )
    return [DueTouch(**dict(r)) for r in rows]


async def mark_sent(conn: asyncpg.Connection, touch_id: UUID, message_id: str) -> bool:
    done = await conn.fetchval(
        """UPDATE touches SET status = 'sent', sent_at = now(), message_id = $2, lease_until = NULL
           WHERE id = $1 AND status = 'sending' RETURNING true""",
        touch_id,
        message_id,
    )
    return bool(done)


async def mark_retry(
    conn: asyncpg.Connection, touch_id: UUID, error: str, *, delay_s: float, give_up: bool
) -> None:
    await conn.execute(
        """UPDATE touches SET status = CASE WHEN $4 THEN 'failed' ELSE 'scheduled' END,
               due_at = now() + make_interval(secs => $3), last_error = $2, lease_until = NULL
           WHERE id = $1""",
        touch_id,
        error[:1000],
        delay_s,
        give_up,
    )


async def touches_of(conn: asyncpg.Connection, lead_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, playbook, channel, template, status, due_at, sent_at, attempts, message_id
           FROM touches WHERE lead_id = $1 ORDER BY created_at""",
        lead_id,
    )
    return [dict(r) for r in rows]
