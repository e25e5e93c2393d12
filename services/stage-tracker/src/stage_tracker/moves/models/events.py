"""The events an outcome of the machine emits: a stage.changed per move, a lead.scored (pure)."""

from __future__ import annotations

from uuid import UUID

from funnel_contracts import EventData, LeadScored, StageChanged
from stage_tracker.moves.models.machine import Outcome


def outcome_events(lead_id: UUID, outcome: Outcome) -> list[EventData]:
    events: list[EventData] = [
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
            owner=outcome.state.owner,
        )
        for move in outcome.moves
    ]
    scored = outcome.scored
    if scored is not None:
        # Every change is published; one whose temperature crosses to hot is the notifier's
        # cue for a sales task (temperature == "hot", previous_temperature != "hot").
        events.append(
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
                owner=outcome.state.owner,
            )
        )
    return events
