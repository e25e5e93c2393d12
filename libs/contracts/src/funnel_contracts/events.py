"""Version 1 event models. The version is part of the type: `funnel.lead.captured.v1`.

A published version never changes incompatibly: fields may be added only as optional,
none is removed, retyped or made required (tests/test_compatibility.py enforces it).
Consumers ignore fields they do not know, so producers can add optional fields first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from funnel_contracts import topics


class SchemaError(ValueError):
    """An event whose type is unknown or whose data does not match its model."""


class EventData(BaseModel):
    """Base of every event's data (the Kafka record value)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]

    lead_id: UUID = Field(description="The lead the event is about; also the record key.")


class Utm(BaseModel):
    """UTM parameters of a visit."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    source: str | None = Field(default=None, max_length=255)
    medium: str | None = Field(default=None, max_length=255)
    campaign: str | None = Field(default=None, max_length=255)
    term: str | None = Field(default=None, max_length=255)
    content: str | None = Field(default=None, max_length=255)


class LeadCaptured(EventData):
    """A person gave contact details for the first time: a new lead exists."""

    event_type: ClassVar[str] = "funnel.lead.captured.v1"
    topic: ClassVar[str] = topics.LEAD_EVENTS

    submission_id: UUID
    form_id: str
    funnel_id: str
    email: str
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    utm: Utm = Field(default_factory=Utm)
    landing_page: str | None = None
    referrer: str | None = None
    captured_at: datetime


class StageChanged(EventData):
    """A lead moved from one funnel stage to another (from_stage is null on entry)."""

    event_type: ClassVar[str] = "funnel.stage.changed.v1"
    topic: ClassVar[str] = topics.STAGE_EVENTS

    funnel_id: str
    funnel_version: int = Field(ge=1)
    from_stage: str | None
    to_stage: str
    to_stage_position: int = Field(ge=0, description="Position of to_stage in the funnel.")
    reason: str
    cause_event_id: str | None = None
    cause_event_type: str | None = None
    changed_at: datetime


class TouchSent(EventData):
    """A touch reached its channel (an email accepted by the SMTP server, and so on)."""

    event_type: ClassVar[str] = "funnel.touch.sent.v1"
    topic: ClassVar[str] = topics.TOUCH_EVENTS

    touch_id: UUID
    playbook: str
    channel: Literal["email", "webhook", "task"]
    template: str
    funnel_id: str | None = None
    stage: str | None = None
    message_id: str | None = None
    sent_at: datetime


EVENT_MODELS: dict[str, type[EventData]] = {
    model.event_type: model for model in (LeadCaptured, StageChanged, TouchSent)
}


def parse_event(event_type: str, data: Any) -> EventData:
    """Validate `data` as the model of `event_type`; SchemaError when it cannot be."""
    model = EVENT_MODELS.get(event_type)
    if model is None:
        raise SchemaError(f"unknown event type {event_type!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Only locations and messages: the input may hold personal data and must stay out of logs.
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise SchemaError(f"{event_type}: {errors}") from exc
