"""stage-tracker's tables: the current stage of each lead and its transitions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from stage_tracker.machine import CurrentStage, Move


async def lock_current(conn: asyncpg.Connection, lead_id: UUID) -> CurrentStage | None:
    row = await conn.fetchrow(
        "SELECT funnel_id, funnel_version, stage FROM lead_stages WHERE lead_id = $1 FOR UPDATE",
        lead_id,
    )
    return CurrentStage(row["funnel_id"], row["funnel_version"], row["stage"]) if row else None


async def apply_move(
    conn: asyncpg.Connection, lead_id: UUID, move: Move, cause_id: str, cause_type: str
) -> None:
    await conn.execute(
        """INSERT INTO lead_stages (lead_id, funnel_id, funnel_version, stage, entered_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (lead_id) DO UPDATE SET stage = excluded.stage,
               funnel_version = excluded.funnel_version, entered_at = excluded.entered_at,
               updated_at = now()""",
        lead_id,
        move.funnel_id,
        move.funnel_version,
        move.to_stage,
        move.occurred_at,
    )
    await conn.execute(
        """INSERT INTO transitions (lead_id, funnel_id, funnel_version, from_stage, to_stage,
               reason, cause_event_id, cause_event_type, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        lead_id,
        move.funnel_id,
        move.funnel_version,
        move.from_stage,
        move.to_stage,
        move.reason,
        cause_id,
        cause_type,
        move.occurred_at,
    )


async def journey(conn: asyncpg.Connection, lead_id: UUID) -> dict[str, Any] | None:
    current = await conn.fetchrow(
        "SELECT funnel_id, funnel_version, stage, entered_at FROM lead_stages WHERE lead_id = $1",
        lead_id,
    )
    if current is None:
        return None
    rows = await conn.fetch(
        """SELECT from_stage, to_stage, reason, cause_event_id, cause_event_type, occurred_at
           FROM transitions WHERE lead_id = $1 ORDER BY id""",
        lead_id,
    )
    return {
        "lead_id": str(lead_id),
        "funnel_id": current["funnel_id"],
        "funnel_version": current["funnel_version"],
        "current_stage": current["stage"],
        "entered_at": current["entered_at"],
        "transitions": [dict(r) for r in rows],
    }
