"""The events an outcome of the machine emits: a stage.changed per move, a lead.scored (pure).

`outcome_events` builds them as contract models. `outcome_event_values` writes the same
events' record values straight from the outcome, field by field into a template of each
contract (the bytes the contracts' encoder writes for `model_dump(mode="json")`), which the
consumer's hot path puts in its outbox rows without a model, a dict or the encoder per event;
tests hold the two equal, byte for byte. An outcome the fast form cannot vouch for (a value
the model would refuse or write differently) gets None, and the caller goes through the models.
"""

from __future__ import annotations

import math
from datetime import datetime
from json.encoder import encode_basestring_ascii as _string
from typing import Any
from uuid import UUID

from funnel_contracts import EventData, LeadScored, StageChanged
from stage_tracker.moves.models.machine import Move, Outcome, ScoreChange

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
        return at.isoformat()[:-6] + "Z"  # "+00:00" -> "Z"
    if offset.seconds % 60 or offset.microseconds:
        raise _Slow  # pydantic drops an offset's seconds; rare enough to leave to it
    return at.isoformat()


def outcome_event_values(lead: str, outcome: Outcome) -> list[tuple[str, bytes]] | None:
    """`outcome_events` as (event type, record value) pairs, in the same order, for the lead
    whose id's text is `lead`: each value written straight from the outcome into a template
    of the contract's fields, the bytes the contracts' encoder writes for the model's
    `model_dump(mode="json")` (json.dumps' defaults). None when only the models can say (a
    value the model would refuse or write otherwise: then call `outcome_events`)."""
    try:
        text = _string(lead)
        owner = _str(outcome.state.owner)
        values = [(STAGE_CHANGED, _stage_changed_value(text, m, owner)) for m in outcome.moves]
        scored = outcome.scored
        if scored is not None:
            funnel_id = _string(outcome.state.funnel_id)
            values.append((LEAD_SCORED, _lead_scored_value(text, funnel_id, scored, owner)))
    except (_Slow, TypeError, OverflowError):
        return None
    return values


def _stage_changed_value(lead: str, move: Move, owner: str) -> bytes:
    """A stage.changed's value; `lead` and `owner` already JSON."""
    version, position = _int(move.funnel_version), _int(move.to_position)
    if move.funnel_version < 1 or move.to_position < 0:
        raise _Slow  # the model refuses these: let it say so
    return (
        f'{{"lead_id": {lead}, "funnel_id": {_string(move.funnel_id)}, '
        f'"funnel_version": {version}, "from_stage": {_str(move.from_stage)}, '
        f'"to_stage": {_string(move.to_stage)}, "to_stage_position": {position}, '
        f'"reason": {_string(move.reason)}, "cause_event_id": {_str(move.cause_event_id)}, '
        f'"cause_event_type": {_str(move.cause_event_type)}, '
        f'"changed_at": {_string(_when(move.occurred_at))}, "actor": {_str(move.actor)}, '
        f'"owner": {owner}}}'
    ).encode()


_TEMPERATURES = frozenset({"cold", "warm", "hot"})


def _lead_scored_value(lead: str, funnel_id: str, scored: ScoreChange, owner: str) -> bytes:
    """A lead.scored's value; `lead`, `funnel_id` and `owner` already JSON."""
    score, previous = scored.score, scored.previous_temperature
    if score.temperature not in _TEMPERATURES or not (
        previous is None or previous in _TEMPERATURES
    ):
        raise _Slow  # the model refuses these
    return (
        f'{{"lead_id": {lead}, "funnel_id": {funnel_id}, "score": {_number(score.total)}, '
        f'"fit_score": {_number(score.fit)}, '
        f'"engagement_score": {_number(score.engagement)}, '
        f'"temperature": {_string(score.temperature)}, '
        f'"previous_temperature": {_str(previous)}, '
        f'"cause_event_id": {_str(scored.cause_event_id)}, '
        f'"scored_at": {_string(_when(scored.at))}, "owner": {owner}}}'
    ).encode()


def _str(value: Any) -> str:
    """A string or null as json.dumps writes it (TypeError for anything else)."""
    return "null" if value is None else _string(value)


def _int(value: Any) -> str:
    """An int as json.dumps writes it (TypeError for anything else, bool included)."""
    if type(value) is not int:
        raise TypeError(value)
    return int.__repr__(value)


def _number(value: Any) -> str:
    """A float field's value as the model writes it: an int or float made a float, written
    as json.dumps writes floats (_Slow for what the model writes as null)."""
    kind = type(value)
    if kind is not float and kind is not int:
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number):
        raise _Slow  # the model writes null for these
    return float.__repr__(number)
