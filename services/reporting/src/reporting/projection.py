"""The projection: each event changes one lead's state, and the aggregates by the difference
it makes. Runs inside the inbox transaction, so an event is applied exactly once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from funnel_contracts import Envelope, EventData, LeadErased, StageChanged
from funnel_servicekit.inbox import Delivery, consume_span
from reporting import store
from reporting.domain.contributions import Contributions, add, contributions, diff
from reporting.domain.lead_state import LeadState, apply


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


async def handle_batch(conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
    """A partition batch's fresh events at once, with the same result as `handle` one by one:
    the leads' states loaded and locked in one statement, each lead's events applied in
    order, the differences summed over the batch and written with one statement per table."""
    events: dict[UUID, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        events[delivery.event.lead_id].append(delivery)
    states = await store.lock_states(conn, list(events))
    # Stage positions as `handle` notes them: in delivery order, none from an erased person.
    positions: dict[tuple[str, str], int] = {}
    stopped = {lead_id for lead_id, (_, was_erased) in states.items() if was_erased}
    for delivery in deliveries:
        event = delivery.event
        if event.lead_id in stopped:
            continue
        if isinstance(event, StageChanged):
            positions[(event.funnel_id, event.to_stage)] = event.to_stage_position
        elif isinstance(event, LeadErased):
            stopped.add(event.lead_id)
    await store.note_stages(conn, positions)
    total: Contributions = {}
    changed: dict[UUID, LeadState] = {}
    erased: dict[UUID, datetime] = {}
    gone: list[UUID] = []
    for lead_id, lead_events in events.items():
        old, was_erased = states[lead_id]
        if was_erased:  # late events of an erased person: nothing of them is kept
            gone.append(lead_id)
            continue
        new = old
        for delivery in lead_events:
            event = delivery.event
            # One consumer span per event, so each event's trace shows where it was projected.
            with consume_span(delivery.topic, delivery.envelope):
                new = apply(new, event)
            if isinstance(event, LeadErased):
                erased[lead_id] = event.erased_at
                break  # what follows it in the batch is a late event of an erased person
        add(total, diff(contributions(old), contributions(new)))
        if lead_id not in erased and new != old:
            changed[lead_id] = new
    if total:
        await store.apply_deltas(conn, total)
    await store.forget_states(conn, gone)
    await store.erase_many(conn, erased)
    await store.save_states(conn, changed)


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
