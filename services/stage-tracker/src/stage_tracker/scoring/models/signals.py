"""Contract events -> signals, the one input shape the state machine knows (pure).

A signal's `kind` is what funnel rules name: an activity type (`pricing_viewed`, or a custom
one such as `renewal_due`), `captured`, `updated`, `touch_opened`, `touch_clicked`,
`unsubscribed`, `consent_granted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring_ascii as _string  # json.dumps of a str
from typing import Any, cast

from funnel_contracts import ActivityRecorded, ConsentChanged, EventData, TouchClicked, TouchOpened
from funnel_contracts.envelope import json_text
from funnel_contracts.lead_reader import LeadDetails, lead_details
from stage_tracker.funnels.models.definition import PropertyValue

CAPTURED = "captured"
UPDATED = "updated"
# The source of a lead update a person at the business made (PATCH at lead-intake).
MANUAL_CORRECTION = "manual"
# The source of leads imported from another tool (its updates fill details, nothing more).
IMPORT = "import"
# The source of the survivor's update a merge emits (its details after the merge).
MERGE = "merge"
TOUCH_OPENED = "touch_opened"
TOUCH_CLICKED = "touch_clicked"
UNSUBSCRIBED = "unsubscribed"
# A captured signal's properties for an imported contact's stage (and since when, ISO 8601).
IMPORTED_STAGE = "imported_stage"
STAGE_ENTERED_AT = "stage_entered_at"
CONSENT_GRANTED = "consent_granted"
# Signals that say nothing about the person coming back (mail clients load pixels themselves).
PASSIVE_KINDS = frozenset({TOUCH_OPENED, UNSUBSCRIBED, CONSENT_GRANTED})


@dataclass(frozen=True)
class Signal:
    event_id: str
    event_type: str
    kind: str
    occurred_at: datetime
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    answers: Mapping[str, str] = field(default_factory=dict)  # lower-case keys and values
    funnel_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "kind": self.kind,
            "occurred_at": self.occurred_at.isoformat(),
            "properties": dict(self.properties),
            "answers": dict(self.answers),
            "funnel_id": self.funnel_id,
        }

    def to_json_text(self) -> str:
        """`json_text(self.to_json())` (json.dumps' defaults), written into a template of the
        fields instead of a dict per signal: the store writes one for every signal."""
        try:
            return (
                f'{{"event_id": {_string(self.event_id)}, '
                f'"event_type": {_string(self.event_type)}, "kind": {_string(self.kind)}, '
                f'"occurred_at": {_string(self.occurred_at.isoformat())}, '
                f'"properties": {json_text(dict(self.properties)) if self.properties else "{}"}, '
                f'"answers": {json_text(dict(self.answers)) if self.answers else "{}"}, '
                f'"funnel_id": {"null" if self.funnel_id is None else _string(self.funnel_id)}}}'
            )
        except TypeError:  # a value of another type than the fields say: the encoder writes it
            return json_text(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signal:
        return cls(
            event_id=data["event_id"],
            event_type=data["event_type"],
            kind=data["kind"],
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            properties=dict(data["properties"]),
            answers=dict(data["answers"]),
            funnel_id=data["funnel_id"],
        )


def _answers(raw: Mapping[str, str]) -> dict[str, str]:
    return {k.strip().lower(): v.strip().lower() for k, v in raw.items() if v.strip()}


def signal_of(event: EventData, event_id: str, lead: LeadDetails | None = None) -> Signal | None:
    """The signal an event carries, or None for events that mean nothing to a stage.

    `lead`: the event's `lead_details` when the caller has read them already. The event's
    class is compared, not `isinstance`d: contract models are never subclassed, and an
    isinstance check through pydantic's metaclass costs several times more (a consumer
    asks for every event).
    """
    t = event.event_type
    kind = type(event)
    if kind is ActivityRecorded:
        activity = cast(ActivityRecorded, event)
        properties: dict[str, PropertyValue] = dict(activity.properties)
        if activity.amount is not None:
            properties["amount"] = float(activity.amount)
        if activity.currency is not None:
            properties["currency"] = activity.currency
        return Signal(event_id, t, activity.activity_type, activity.occurred_at, properties)
    if kind is TouchClicked:
        return Signal(event_id, t, TOUCH_CLICKED, cast(TouchClicked, event).clicked_at)
    if kind is TouchOpened:
        return Signal(event_id, t, TOUCH_OPENED, cast(TouchOpened, event).opened_at)
    if kind is ConsentChanged:
        consent = cast(ConsentChanged, event)
        category = CONSENT_GRANTED if consent.granted else UNSUBSCRIBED
        return Signal(event_id, t, category, consent.changed_at, {"category": consent.category})
    if lead is None:
        lead = lead_details(event)  # captured or updated, whatever the version
    if lead is not None:
        if lead.source == MANUAL_CORRECTION:
            return None  # a colleague corrected the details: the person did nothing
        if lead.source in (IMPORT, MERGE) and not lead.new:
            return None  # an import filled in known details, or a merge: nobody did anything
        answers = _answers(lead.qualification)
        if lead.new:
            imported: dict[str, PropertyValue] = {}
            if lead.imported_stage:
                imported[IMPORTED_STAGE] = lead.imported_stage
                entered = max(lead.stage_entered_at or lead.at, lead.at)
                imported[STAGE_ENTERED_AT] = entered.isoformat()
            return Signal(
                event_id, t, CAPTURED, lead.at, imported, answers=answers, funnel_id=lead.funnel_id
            )
        return Signal(event_id, t, UPDATED, lead.at, answers=answers)
    return None
