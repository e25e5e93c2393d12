"""Persist an outcome of the machine: state, transitions, and the events it emits (outbox)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from funnel_contracts import LeadScored, StageChanged
from funnel_servicekit.outbox import enqueue
from stage_tracker import store
from stage_tracker.funnels import FunnelDefinition
from stage_tracker.machine import Outcome, timer_due


async def save_outcome(
    conn: asyncpg.Connection,
    lead_id: UUID,
    outcome: Outcome,
    funnel: FunnelDefinition,
    *,
    schema: str,
    source: str,
) -> None:
    """Inside the caller's transaction: the lead's new state, its moves, and their events."""
    await store.save_state(conn, lead_id, outcome.state, timer_due(outcome.state, funnel))
    if outcome.moves:
        await store.add_moves(conn, lead_id, outcome.moves)
    for move in outcome.moves:
        await enqueue(
            conn,
            schema,
            StageChanged(
                lead_id=lead_id,
                funnel_id=move.funnel_id,
                funnel_version=move.funnel_version,
                from_stage=move.from_stage,
                to_stage=move.to_stage,
                to_stage_position=move.to_position,
                reason=move.reason,
                cause_event_id=move.cause_event_id,
                cause_event_type=move.cause_event_type,
                changed_at=move.occurred_at,
                actor=move.actor,
            ),
            source=source,
        )
    scored = outcome.scored
    if scored is not None:
        # Every change is published; one whose temperature crosses to hot is the notifier's
        # cue for a sales task (temperature == "hot", previous_temperature != "hot").
        await enqueue(
            conn,
            schema,
            LeadScored(
                lead_id=lead_id,
                funnel_id=outcome.state.funnel_id,
                score=scored.score.total,
                fit_score=scored.score.fit,
                engagement_score=scored.score.engagement,
                temperature=scored.score.temperature,
                previous_temperature=scored.previous_temperature,
                cause_event_id=scored.cause_event_id,
                scored_at=scored.at,
            ),
            source=source,
        )
