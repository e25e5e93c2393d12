"""Sales tasks ("hot lead: call now"): one per task touch, listed for the sales team."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg


async def create(
    conn: asyncpg.Connection,
    touch_id: UUID,
    lead_id: UUID,
    *,
    playbook: str,
    title: str,
    funnel_id: str | None,
    stage: str | None,
) -> dict[str, Any]:
    """The task of a touch (the touch id is the task id: a retried send makes no second)."""
    await conn.execute(
        """INSERT INTO tasks (id, lead_id, playbook, title, funnel_id, stage, score)
           VALUES ($1, $2, $3, $4, $5, $6,
                   (SELECT score FROM lead_state WHERE lead_id = $2))
           ON CONFLICT (id) DO NOTHING""",
        touch_id,
        lead_id,
        playbook,
        title,
        funnel_id,
        stage,
    )
    row = await conn.fetchrow(
        """SELECT t.id, t.lead_id, t.playbook, t.title, t.funnel_id, t.stage, t.status,
               t.score, t.created_at, s.temperature
           FROM tasks t LEFT JOIN lead_state s ON s.lead_id = t.lead_id WHERE t.id = $1""",
        touch_id,
    )
    return dict(row) if row else {}


async def listing(
    conn: asyncpg.Connection, *, status: str | None, lead_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT t.id, t.lead_id, t.playbook, t.title, t.funnel_id, t.stage, t.status,
               t.score, t.created_at, s.temperature
           FROM tasks t LEFT JOIN lead_state s ON s.lead_id = t.lead_id
           WHERE ($1::text IS NULL OR t.status = $1) AND ($2::uuid IS NULL OR t.lead_id = $2)
           ORDER BY t.created_at DESC LIMIT $3""",
        status,
        lead_id,
        limit,
    )
    return [dict(r) for r in rows]
