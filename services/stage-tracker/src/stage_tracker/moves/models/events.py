"""The events an outcome of the machine emits: a stage.changed per move, a lead.scored (pure).

`outcome_events` builds them as contract models. `outcome_event_data` builds the same events
straight in their JSON form (the dicts `model_dump(mode="json")` gives, key for key), which
the consumer's hot path encodes without a model per event; tests hold the two equal, byte for
byte once encoded. An outcome the fast form cannot vouch for (a value the model would refuse
or write differently) gets None, and the caller goes through the models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from json.encoder import encode_basestring_ascii as _string
from typing import Any
from uuid import UUID

from funnel_contracts import EventData, LeadScored, StageChanged
from funnel_contracts.envelope import json_text
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
        return at.isoformat()[:-6] + "Z"  # "+00:00" -> "Z"
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


def _str(value: Any) -> str:
    """A string or null as json.dumps writes it (TypeError for anything else)."""
    return "null" if value is None else _string(value)


def _int(value: Any) -> str:
    if type(value) is not int:
        raise TypeError(value)
    return int.__repr__(value)


def _float(value: Any) -> str:
    if type(value) is not float or not math.isfinite(value):
        raise TypeError(value)
    return float.__repr__(value)


def _stage_changed_json(d: dict[str, Any]) -> str:
    return (
        f'{{"lead_id": {_string(d["lead_id"])}, "funnel_id": {_string(d["funnel_id"])}, '
        f'"funnel_version": {_int(d["funnel_version"])}, '
        f'"from_stage": {_str(d["from_stage"])}, "to_stage": {_string(d["to_stage"])}, '
        f'"to_stage_position": {_int(d["to_stage_position"])}, '
        f'"reason": {_string(d["reason"])}, "cause_event_id": {_str(d["cause_event_id"])}, '
        f'"cause_event_type": {_str(d["cause_event_type"])}, '
        f'"changed_at": {_string(d["changed_at"])}, "actor": {_str(d["actor"])}, '
        f'"owner": {_str(d["owner"])}}}'
    )


def _lead_scored_json(d: dict[str, Any]) -> str:
    return (
        f'{{"lead_id": {_string(d["lead_id"])}, "funnel_id": {_string(d["funnel_id"])}, '
        f'"score": {_float(d["score"])}, "fit_score": {_float(d["fit_score"])}, '
        f'"engagement_score": {_float(d["engagement_score"])}, '
        f'"temperature": {_string(d["temperature"])}, '
        f'"previous_temperature": {_str(d["previous_temperature"])}, '
        f'"cause_event_id": {_str(d["cause_event_id"])}, '
        f'"scored_at": {_string(d["scored_at"])}, "owner": {_str(d["owner"])}}}'
    )


_TEMPLATES = {STAGE_CHANGED: _stage_changed_json, LEAD_SCORED: _lead_scored_json}
# The keys each template writes, in its order: only data with exactly these goes through it.
_KEYS = {
    STAGE_CHANGED: tuple(StageChanged.model_fields),
    LEAD_SCORED: tuple(LeadScored.model_fields),
}


def template_of(event_type: str, data: dict[str, Any]) -> Callable[[dict[str, Any]], str] | None:
    """The template that writes `data`: None unless it has exactly the template's keys."""
    template = _TEMPLATES.get(event_type)
    return template if template is not None and tuple(data) == _KEYS[event_type] else None


def outcome_event_json(event_type: str, data: dict[str, Any]) -> bytes:
    """The record value of one pair of `outcome_event_data`: the bytes the contracts' encoder
    writes for `data` (json.dumps' defaults), filled into a template of the event's fields
    instead of walking the dict; anything the template does not expect (another key, order
    or value type) goes through the encoder itself. Tests hold the two equal."""
    template = template_of(event_type, data)
    if template is not None:
        try:
            return template(data).encode()
        except TypeError:
            pass  # a value of another type: the encoder writes it
    return json_text(data).encode()
