"""The events an outcome of the machine emits: a stage.changed per move, a lead.scored (pure).

`outcome_events` builds them as contract models. `outcome_event_data` builds the same events
straight in their JSON form (the dicts `model_dump(mode="json")` gives, key for key), which
the consumer's hot path encodes without a model per event; tests hold the two equal, byte for
byte once encoded. An outcome the fast form cannot vouch for (a value the model would refuse
or write differently) gets None, and the caller goes through the models.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from uuid import UUID

from funnel_contracts import EventData, LeadScored, StageChanged
from stage_tracker.moves.models.machine import Move, Outcome

STAGE_CHANGED = StageChanged.event_type
LEAD_SCORED = LeadScored.event_type
# Both go to the same topic (stage events).
TOPIC = StageChanged.topic


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


class _Slow(Exception):
    """A value the fast form does not write the way the model would."""


def _when(at: datetime) -> str:
    """A datetime as pydantic writes it in JSON mode: ISO 8601, "Z" for UTC."""
    offset = at.utcoffset()
    if offset is None:
        raise _Slow  # naive: the models would be the judge
    if not offset:
        return at.replace(tzinfo=None).isoformat() + "Z"
    if offset.seconds % 60 or offset.microseconds:
        raise _Slow  # pydantic drops an offset's seconds; rare enough to leave to it
    return at.isoformat()


_TEMPERATURES = frozenset({"cold", "warm", "hot"})


def _number(value: float) -> float:
    if not math.isfinite(value):
        raise _Slow  # the model writes null for these
    return float(value)


def _stage_changed(lead: str, move: Move, owner: str | None) -> dict[str, Any]:
    if move.funnel_version < 1 or move.to_position < 0:
        raise _Slow  # the model refuses these: let it say so
    return {
        "lead_id": lead,
        "funnel_id": move.funnel_id,
        "funnel_version": move.funnel_version,
        "from_stage": move.from_stage,
        "to_stage": move.to_stage,
        "to_stage_position": move.to_position,
        "reason": move.reason,
        "cause_event_id": move.cause_event_id,
        "cause_event_type": move.cause_event_type,
        "changed_at": _when(move.occurred_at),
        "actor": move.actor,
        "owner": owner,
    }


def outcome_event_data(lead_id: UUID, outcome: Outcome) -> list[tuple[str, dict[str, Any]]] | None:
    """`outcome_events` as (event type, JSON data) pairs, in the same order; None when only
    the models can say (then call `outcome_events`)."""
    lead = str(lead_id)
    owner = outcome.state.owner
    try:
        data = [(STAGE_CHANGED, _stage_changed(lead, m, owner)) for m in outcome.moves]
        scored = outcome.scored
        if scored is not None:
            score = scored.score
            if score.temperature not in _TEMPERATURES or not (
                scored.previous_temperature is None or scored.previous_temperature in _TEMPERATURES
            ):
                raise _Slow  # the model refuses these
            data.append(
                (
                    LEAD_SCORED,
                    {
                        "lead_id": lead,
                        "funnel_id": outcome.state.funnel_id,
                        "score": _number(score.total),
                        "fit_score": _number(score.fit),
                        "engagement_score": _number(score.engagement),
                        "temperature": score.temperature,
                        "previous_temperature": scored.previous_temperature,
                        "cause_event_id": scored.cause_event_id,
                        "scored_at": _when(scored.at),
                        "owner": owner,
                    },
                )
            )
    except _Slow:
        return None
    return data
