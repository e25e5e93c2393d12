"""The base of every event model, the registry of event types, and shared value types."""

from __future__ import annotations

import re
from collections.abc import Mapping
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


# What may travel in the clear of a qualification answer or an activity property (decision
# 0054): a choice, one word or words joined by `-`, `_` or `.` (`yes`, `decision-maker`,
# `this_quarter`, `plan.pro`), up to 40 characters, with no `@`, no space and no run of five
# digits (a phone number, a postcode, a customer number). Anything else is sealed, and the
# clear copy says only that there is an answer: `SEALED_VALUE`.
SEALED_VALUE = "*"
_CHOICE = re.compile(r"^[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*$")
_DIGIT_RUN = re.compile(r"[0-9]{5}")
# Properties that are always sealed whatever their shape: an offline touch's note.
ALWAYS_SEALED_PROPERTIES = frozenset({"text"})
_LONG_NUMBER = 1_000_000


def is_choice(value: str) -> bool:
    """Whether `value` looks like a choice from a list rather than words about a person."""
    return len(value) <= 40 and bool(_CHOICE.match(value)) and not _DIGIT_RUN.search(value)


def clear_answers(answers: Mapping[str, str]) -> dict[str, str]:
    """Qualification answers as they travel in the clear: a choice as it is, anything else
    `SEALED_VALUE` (answered, words sealed); an empty answer is left out."""
    return {
        k: v.strip() if is_choice(v.strip()) else SEALED_VALUE
        for k, v in answers.items()
        if v.strip() and is_choice(k)
    }


def clear_properties(
    properties: Mapping[str, str | int | float | bool | None],
) -> dict[str, str | int | float | bool | None]:
    """Activity properties as they travel in the clear: booleans, fractions, integers below a
    million and choices as they are; other text (a note's `text` always) and longer integers
    (a phone or customer number) `SEALED_VALUE`; a key that is not a choice is left out."""
    out: dict[str, str | int | float | bool | None] = {}
    for k, v in properties.items():
        if not is_choice(k):
            continue
        out[k] = SEALED_VALUE if _sealed_property(k, v) else v
    return out


def _sealed_property(key: str, value: str | int | float | bool | None) -> bool:
    if isinstance(value, str):
        return key in ALWAYS_SEALED_PROPERTIES or not is_choice(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _LONG_NUMBER


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
