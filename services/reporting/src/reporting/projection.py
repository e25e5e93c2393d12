"""The stage-count projection: applied once per stage.changed event, inside its transaction."""

from __future__ import annotations

from typing import Any

import asyncpg

from funnel_contracts import Envelope, EventData, StageChanged


async def apply_stage_changed(conn: asyncpg.Connection, event: StageChanged) -> None:
    previous = await conn.fetchrow(
        "SELECT funnel_id, stage FROM lead_current_stage WHERE lead_id = $1 FOR UPDATE",
        event.lead_id,
    )
    if previous is not None:
        await conn.execute(
            "UPDATE stage_counts SET leads = leads - 1 WHERE funnel_id = $1 AND stage = $2",
            previous["funnel_id"],
            previous["stage"],
        )
    await conn.execute(
        """INSERT INTO lead_current_stage (lead_id, funnel_id, stage, changed_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (lead_id) DO UPDATE SET funnel_id = excluded.funnel_id,
               stage = excluded.stage, changed_at = excluded.changed_at""",
        event.lead_id,
        event.funnel_id,
        event.to_stage,
        event.changed_at,
    )
    await conn.execute(
        """INSERT INTO stage_counts (funnel_id, stage, stage_position, leads) VALUES ($1, $2, $3, 1)
           ON CONFLICT (funnel_id, stage) DO UPDATE SET leads = stage_counts.leads + 1""",
        event.funnel_id,
        event.to_stage,
        event.to_stage_position,
    )


async def handle(conn: asyncpg.Connection, envelope: Envelope, event: EventData) -> None:
    if isinstance(event, StageChanged):
        await apply_stage_changed(conn, event)


async def snapshot(conn: asyncpg.Connection, funnel_id: str) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT stage, stage_position, leads FROM stage_counts
           WHERE funnel_id = $1 ORDER BY stage_position, stage""",
        funnel_id,
    )
    stages = [
        {"stage": r["stage"], "position": r["stage_position"], "leads": r["leads"]} for r in rows
    ]
    return {"funnel_id": funnel_id, "total": sum(s["leads"] for s in stages), "stages": stages}
