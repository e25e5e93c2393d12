"""The base of every event model, the registry of event types, and shared value types."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EVENT_MODELS: dict[str, type[EventData]] = {}


class SchemaError(ValueError):
    """An event whose type is unknown or whose data does not match its model."""


class EventData(BaseModel):
    """Base of every event's data (the Kafka record value).

    A subclass that sets `event_type` registers itself; `parse_event` finds it by that type.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]

    lead_id: UUID = Field(description="The lead the event is about; also the record key.")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("event_type")
        if isinstance(event_type, str):
            if event_type in EVENT_MODELS:
                raise TypeError(f"event type {event_type} is defined twice")
            EVENT_MODELS[event_type] = cls


class ValueModel(BaseModel):
    """A value inside an event: frozen, forward compatible (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Utm(ValueModel):
    """UTM parameters of a visit."""

    source: str | None = Field(default=None, max_length=255)
    medium: str | None = Field(default=None, max_length=255)
    campaign: str | None = Field(default=None, max_length=255)
    term: str | None = Field(default=None, max_length=255)
    content: str | None = Field(default=None, max_length=255)


def page_address(url: str | None) -> str | None:
    """A page's host and path, without its scheme, query, fragment or user info: what the
    tracker and reporting need of a URL in the clear (a query string may carry an email, a
    name or a click id; those travel only sealed, or not at all)."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path}"[:2048] or None


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
