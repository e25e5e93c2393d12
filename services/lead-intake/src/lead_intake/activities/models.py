"""Activities as sites and internal systems report them (pure: validation, event, answer)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from funnel_contracts import ActivityRecorded, Utm
from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES
from funnel_contracts.events.activity import PropertyValue
from funnel_contracts.events.base import clear_properties, page_address
from funnel_contracts.sealed import PersonalData, seal
from funnel_servicekit.problems import FieldError, field_error
from lead_intake.common.normalize import normalize_email
from lead_intake.common.text_rules import StorableText

MONEY_TYPES = ("purchase_completed", "refund_issued")
MAX_PROPERTIES = 50
# An offline touch's `properties.outcome` (e.g. "reached", "voicemail") and `properties.text`.
MAX_OUTCOME = 100
MAX_TEXT = 1000
# What happened to each item of a batch: emitted for its lead now, kept until its person is
# known (an anonymous visitor, an email nobody has given yet), or stored already.
ItemStatus = Literal["accepted", "pending", "duplicate"]


class ActivityIn(BaseModel):
    """One thing a person did, at its own time, identified by lead id, email or visitor id."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: UUID | None = Field(
        default=None, description="The sender's id for it: a retried batch counts it once."
    )
    type: str = Field(
        pattern=r"^[a-z][a-z0-9_.-]{0,63}$",
        description="page_view, pricing_viewed, ..., purchase_completed, or a custom type.",
    )
    occurred_at: AwareDatetime
    lead_id: UUID | None = None
    email: str | None = Field(default=None, max_length=320)
    visitor_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$")
    page_url: str | None = Field(default=None, max_length=2048)
    utm: Utm | None = None
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=4)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    order_id: str | None = Field(default=None, min_length=1, max_length=200)
    properties: dict[str, PropertyValue] = Field(default_factory=dict)
    actor: str | None = Field(
        default=None,
        max_length=200,
        description="Ignored: an offline touch's actor is the name of the key that logs it.",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value is not None else None

    @field_validator("properties")
    @classmethod
    def _bounded(cls, value: dict[str, PropertyValue]) -> dict[str, PropertyValue]:
        if len(value) > MAX_PROPERTIES:
            raise ValueError(f"at most {MAX_PROPERTIES} properties")
        for key, item in value.items():
            if len(key) > 64 or (isinstance(item, str) and len(item) > 1000):
                raise ValueError(f"{key[:64]!r}: keys up to 64, values up to 1000 characters")
        return value

    @model_validator(mode="after")
    def _identified_and_priced(self) -> ActivityIn:
        if self.lead_id is None and self.email is None and self.visitor_id is None:
            raise ValueError("name the person: lead_id, email or visitor_id")
        if self.type in MONEY_TYPES and (self.amount is None or self.currency is None):
            raise ValueError(f"{self.type} needs amount and currency")
        if self.type == "purchase_completed" and self.order_id is None:
            raise ValueError("purchase_completed needs order_id (a purchase counts once)")
        return self

    def details(self, actor: str | None = None) -> dict[str, Any]:
        """What is stored beside the activity's columns (JSON); an offline touch keeps the
        name of the key that logged it (`actor`), never the body's."""
        details: dict[str, Any] = {
            "page_url": self.page_url,
            "utm": self.utm.model_dump(exclude_none=True) if self.utm else None,
            "amount": str(self.amount) if self.amount is not None else None,
            "currency": self.currency,
            "properties": self.properties,
        }
        if self.type in OFFLINE_ACTIVITY_TYPES and actor is not None:
            details["actor"] = actor
        return details


class ActivityBatch(StorableText):
    """The body of `POST /v1/activities`."""

    model_config = ConfigDict(extra="forbid")

    activities: list[ActivityIn] = Field(min_length=1, max_length=500)


@dataclass(frozen=True)
class StoredActivity:
    """An activity as stored: its person may not be known yet (`lead_id` None)."""

    id: UUID
    lead_id: UUID | None
    visitor_id: str | None
    activity_type: str
    occurred_at: datetime
    recorded_at: datetime
    order_id: str | None
    details: dict[str, Any]
    pending_email_sha256: str | None = None


def activity_event(activity: StoredActivity, lead_id: UUID, key: bytes | None) -> ActivityRecorded:
    """The contract event of a stored activity (also of one linked later to its visitor).

    Neither the visitor id nor the page's query string is in it (decision 0043); properties
    travel whole only sealed with the lead's `key`, in the clear only their choices (0054)."""
    details = activity.details
    utm = details.get("utm")
    amount = details.get("amount")
    properties = details.get("properties") or {}
    page_url = details.get("page_url")
    sealed = None
    if key is not None and (properties or page_url):
        sealed = seal(
            PersonalData(properties=properties, page_url=page_url),
            key=key,
            lead_id=lead_id,
            event_type=ActivityRecorded.event_type,
        )
    return ActivityRecorded(
        lead_id=lead_id,
        activity_id=activity.id,
        activity_type=activity.activity_type,
        occurred_at=activity.occurred_at,
        recorded_at=activity.recorded_at,
        page_url=page_address(details.get("page_url")),
        utm=Utm.model_validate(utm) if utm else None,
        amount=Decimal(amount) if amount is not None else None,
        currency=details.get("currency"),
        order_id=activity.order_id,
        properties=clear_properties(properties),
        personal_data=sealed,
        actor=details.get("actor"),
    )


def email_sha256(email: str) -> str:
    """How a waiting activity names its email: the hash of the normalized address."""
    return hashlib.sha256(email.encode()).hexdigest()


@dataclass(frozen=True)
class Known:
    """Who the batch's identifiers name, as the database knows them now."""

    lead_ids: frozenset[UUID]
    by_email: dict[str, UUID]
    by_visitor: dict[str, UUID]


@dataclass(frozen=True)
class Owner:
    """The lead an activity belongs to, or what it waits for while its person is unknown."""

    lead_id: UUID | None
    waits_for_email: str | None = None  # the email's SHA-256


def owner(index: int, activity: ActivityIn, known: Known) -> Owner | FieldError:
    """Whose activity this is; an error naming the field when it names a lead that is not.

    A lead id is ours: an unknown one will never appear, so it is refused. An email or a
    visitor not known yet may be tomorrow's lead: the activity waits for it.
    """
    if activity.lead_id is not None:
        if activity.lead_id in known.lead_ids:
            return Owner(activity.lead_id)
        return field_error(f"activities.{index}.lead_id", "no such lead")
    if activity.email is not None:
        lead_id = known.by_email.get(activity.email)
        return Owner(lead_id) if lead_id else Owner(None, email_sha256(activity.email))
    assert activity.visitor_id is not None
    return Owner(known.by_visitor.get(activity.visitor_id))


def unknown_people(batch: ActivityBatch, known: Known) -> tuple[list[str], list[str]]:
    """The emails and visitor ids of the batch that name no lead yet (sorted, distinct)."""
    emails = {a.email for a in batch.activities if a.lead_id is None and a.email}
    visitors = {
        a.visitor_id
        for a in batch.activities
        if a.lead_id is None and a.email is None and a.visitor_id
    }
    return sorted(emails - known.by_email.keys()), sorted(visitors - known.by_visitor.keys())


def offline_errors(batch: ActivityBatch) -> list[FieldError]:
    """An offline touch's outcome and text are strings of bounded length; a note has a text."""
    errors: list[FieldError] = []
    for i, activity in enumerate(batch.activities):
        if activity.type not in OFFLINE_ACTIVITY_TYPES:
            continue
        for name, longest in (("outcome", MAX_OUTCOME), ("text", MAX_TEXT)):
            value = activity.properties.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > longest):
                message = f"a string of at most {longest} characters"
                errors.append(field_error(f"activities.{i}.properties.{name}", message))
        if activity.type == "note_added" and not activity.properties.get("text"):
            errors.append(field_error(f"activities.{i}.properties.text", "a note needs a text"))
    return errors


def public_key_errors(batch: ActivityBatch) -> list[FieldError]:
    """A public key is in every page's source: it may only speak for anonymous visitors, and
    never log an offline touch (a call, a meeting, a note: the team's, with a named key)."""
    errors = [
        field_error(
            f"activities.{i}.type",
            f"activity_type {a.type} is logged by the team: it needs an internal key "
            "(leads:write), not a public key",
        )
        for i, a in enumerate(batch.activities)
        if a.type in OFFLINE_ACTIVITY_TYPES
    ]
    errors += [
        field_error(f"activities.{i}.{name}", "a public key may only name visitor_id")
        for i, a in enumerate(batch.activities)
        for name in ("lead_id", "email")
        if getattr(a, name) is not None
    ]
    errors += [
        field_error(f"activities.{i}.visitor_id", "required with a public key")
        for i, a in enumerate(batch.activities)
        if a.visitor_id is None
    ]
    return errors


class ItemResult(BaseModel):
    id: UUID = Field(description="The activity's id (the sender's, or one given here).")
    status: ItemStatus = Field(
        description="accepted: emitted for its lead; pending: kept until its person is known "
        "(emitted then, with its own time); duplicate: stored already, nothing changed."
    )


class ActivitiesAccepted(BaseModel):
    accepted: int = Field(description="Emitted for their lead now.")
    pending: int = Field(description="Kept until their visitor or email becomes a lead.")
    duplicates: int
    activity_ids: list[UUID] = Field(description="Each item's id, in the batch's order.")
    items: list[ItemResult] = Field(description="What happened to each item, in order.")

    @classmethod
    def of(cls, items: list[ItemResult]) -> ActivitiesAccepted:
        return cls(
            accepted=sum(i.status == "accepted" for i in items),
            pending=sum(i.status == "pending" for i in items),
            duplicates=sum(i.status == "duplicate" for i in items),
            activity_ids=[i.id for i in items],
            items=items,
        )


class NoteOut(BaseModel):
    """An offline touch as logged: its outcome and words (sealed on the topics, decision 0054)."""

    activity_id: UUID
    activity_type: str = Field(description=f"One of {', '.join(OFFLINE_ACTIVITY_TYPES)}.")
    occurred_at: datetime
    outcome: str | None = None
    text: str | None = None
    actor: str | None = Field(default=None, description="The name of the key that logged it.")


class NotesOut(BaseModel):
    """`GET /v1/leads/{lead_id}/notes`: a person's offline touches, newest first."""

    items: list[NoteOut]


MAX_NOTES = 200


def note_of(stored: Any) -> NoteOut:
    """A stored offline touch as the team reads it."""
    details = stored.details or {}
    properties = details.get("properties") or {}

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return NoteOut(
        activity_id=stored.id,
        activity_type=stored.activity_type,
        occurred_at=stored.occurred_at,
        outcome=text(properties.get("outcome")),
        text=text(properties.get("text")),
        actor=details.get("actor"),
    )
