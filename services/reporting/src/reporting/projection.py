"""The projection: each event changes one lead's state, and the aggregates by the difference
it makes. Runs inside the inbox transaction, so an event is applied exactly once."""

from __future__ import annotations

from typing import Any

import asyncpg

from funnel_contracts import Envelope, EventData, LeadErased, StageChanged
from reporting import store
from reporting.domain.contributions import contributions, diff
from reporting.domain.lead_state import apply


async def handle(conn: asyncpg.Connection, envelope: Envelope, event: EventData) -> None:
    lead_id = event.lead_id
    old, erased = await store.lock_state(conn, lead_id)
    if erased:  # a late event of an erased person: nothing of it is kept
        await conn.execute("DELETE FROM lead_states WHERE lead_id = $1", lead_id)
        return
    if isinstance(event, StageChanged):
        await store.note_stage(conn, event.funnel_id, event.to_stage, event.to_stage_position)
    new = apply(old, event)
    deltas = diff(contributions(old), contributions(new))
    if deltas:
        await store.apply_deltas(conn, deltas)
    if isinstance(event, LeadErased):
        await store.erase(conn, lead_id, event.erased_at)
    elif new != old:
        await store.save_state(conn, lead_id, new)


async def snapshot(conn: asyncpg.Connection, funnel_id: str) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT c.stage, coalesce(s.position, 0) AS position, c.leads
           FROM stage_counts c
           LEFT JOIN funnel_stages s ON s.funnel_id = c.funnel_id AND s.stage = c.stage
           WHERE c.funnel_id = $1 AND c.leads > 0 ORDER BY position, c.stage""",
        funnel_id,
    )
    stages = [{"stage": r["stage"], "position": r["position"], "leads": r["leads"]} for r in rows]
    return {"funnel_id": funnel_id, "total": sum(s["leads"] for s in stages), "stages": stages}
