"""A person as the team sees them, finds them and corrects them (pure: shapes and rules)."""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from funnel_contracts import Consent, LeadUpdatedV2, Utm
from funnel_contracts.sealed import seal
from lead_intake.common.normalize import normalize_email, normalize_name, normalize_phone
from lead_intake.common.sealing import contact_data
from lead_intake.common.text_rules import StorableText

# What only a key with pii:read sees of a person: left out of the body (absent, not null).
CONTACT_FIELDS = frozenset({"email", "phone", "first_name", "last_name", "custom_fields"})
MAX_SUBMISSIONS_SHOWN = 50
DEFAULT_PAGE = 50
MAX_PAGE = 200
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,4}$")
_CATEGORY = r"^[a-z0-9][a-z0-9_-]{0,63}$"


# -- The person ------------------------------------------------------------------------------


class ConsentState(BaseModel):
    granted: bool
    at: datetime | None = Field(description="When it was given or withdrawn.")
    source: str | None = Field(
        description="What recorded it: `form:<form_id>` (or import, a platform), or "
        "`manual:<key name>` for a correction."
    )


class TouchpointOut(BaseModel):
    utm: dict[str, str] = Field(
        default_factory=dict, description="The UTM tags given: source, medium, campaign, ..."
    )
    landing_page: str | None = None
    referrer: str | None = None


class SubmissionOut(BaseModel):
    submission_id: UUID
    form_id: str
    source: str
    submitted_at: datetime


class SubmissionsOut(BaseModel):
    count: int = Field(description="All of the person's submissions.")
    items: list[SubmissionOut] = Field(description="The latest 50 at most, newest first.")


class PersonOut(BaseModel):
    """`GET /v1/leads/{lead_id}`; the contact details only for a key with pii:read."""

    lead_id: UUID
    email: str | None = Field(default=None, description="With pii:read only.")
    phone: str | None = Field(default=None, description="With pii:read only.")
    first_name: str | None = Field(default=None, description="With pii:read only.")
    last_name: str | None = Field(default=None, description="With pii:read only.")
    custom_fields: dict[str, str] | None = Field(default=None, description="With pii:read only.")
    consent: dict[str, ConsentState] = Field(description="Per category.")
    locale: str | None
    time_zone: str | None
    first_touch: TouchpointOut | None
    last_touch: TouchpointOut | None
    qualification: dict[str, str] = Field(description="The latest answer to each question.")
    submissions: SubmissionsOut
    source: str = Field(description="How the person first arrived (form, import, a platform).")
    created_at: datetime
    updated_at: datetime
    test: bool
    merged_into: UUID | None


def person_body(person: PersonOut, *, contact: bool) -> dict[str, Any]:
    """The answer's JSON: without pii:read the contact details are left out altogether."""
    return person.model_dump(mode="json", exclude=None if contact else set(CONTACT_FIELDS))


def touchpoint(value: dict[str, Any] | None) -> TouchpointOut | None:
    if not value:
        return None
    return TouchpointOut(
        utm=Utm.model_validate(value.get("utm") or {}).model_dump(exclude_none=True),
        landing_page=value.get("landing_page"),
        referrer=value.get("referrer"),
    )


def consent_state(
    captured: dict[str, Any] | None, captured_source: str | None, changes: dict[str, Any]
) -> dict[str, ConsentState]:
    """Per category, the newer of what a capture brought and what was changed by hand."""
    state: dict[str, ConsentState] = {}
    if captured:
        given = datetime.fromisoformat(captured["given_at"]) if captured.get("given_at") else None
        for category in captured.get("categories") or ():
            state[category] = ConsentState(granted=True, at=given, source=captured_source)
    for category, change in sorted(changes.items()):
        at = datetime.fromisoformat(change["at"])
        current = state.get(category)
        if current is None or current.at is None or at >= current.at:
            state[category] = ConsentState(
                granted=change["granted"], at=at, source=change["source"]
            )
    return state


# -- Finding people --------------------------------------------------------------------------


class PersonFound(BaseModel):
    lead_id: UUID
    created_at: datetime
    updated_at: datetime
    email: str | None = Field(default=None, description="With pii:read only.")
    phone: str | None = Field(default=None, description="With pii:read only.")
    first_name: str | None = Field(default=None, description="With pii:read only.")
    last_name: str | None = Field(default=None, description="With pii:read only.")


class PeoplePage(BaseModel):
    items: list[PersonFound]
    next_after: UUID | None = Field(description="Pass as `after` for the next page; null: last.")


def page_body(page: PeoplePage, *, contact: bool) -> dict[str, Any]:
    exclude = None if contact else {"items": {"__all__": set(CONTACT_FIELDS)}}
    return page.model_dump(mode="json", exclude=exclude)


@dataclass(frozen=True)
class Search:
    """What to look for: digests of the search index, all of which a person must have; or
    (`ids`, digests empty) the people with these lead ids, as a list of leads names them."""

    digests: list[bytes]
    after: UUID | None
    limit: int
    ids: list[UUID] | None = None


# -- Correcting a person ---------------------------------------------------------------------


class ConsentPatch(StorableText):
    model_config = ConfigDict(extra="forbid")

    granted: list[str] = Field(default_factory=list, max_length=20)
    withdrawn: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("granted", "withdrawn")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        for category in value:
            if not re.match(_CATEGORY, category):
                raise ValueError("categories are 1 to 64 of a-z, 0-9, '-' and '_'")
        return sorted(set(value))

    @model_validator(mode="after")
    def _apart(self) -> ConsentPatch:
        both = set(self.granted) & set(self.withdrawn)
        if both:
            raise ValueError(f"granted and withdrawn at once: {', '.join(sorted(both))}")
        return self


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class PersonPatch(StorableText):
    """`PATCH /v1/leads/{lead_id}`: the fields given are set (null clears, except email and
    phone together); the others are left as they are."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(
        default=None, max_length=40, description="With +country code; stored as E.164."
    )
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    locale: str | None = Field(default=None, max_length=35, description="BCP 47, e.g. sv-SE.")
    time_zone: str | None = Field(default=None, max_length=64, description="IANA.")
    consent: ConsentPatch | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value is not None else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value, None) if value is not None else None

    @field_validator("first_name", "last_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return normalize_name(value) if value is not None else None

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and not _LOCALE.match(value.strip()):
            raise ValueError("must be a BCP 47 tag such as sv-SE")
        return value.strip() if value is not None else None

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is not None and value.strip() not in _zones():
            raise ValueError("must be an IANA time zone such as Europe/Stockholm")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _something(self) -> PersonPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        if "consent" in self.model_fields_set and self.consent is None:
            raise ValueError("consent: give {granted, withdrawn}")
        return self


@dataclass(frozen=True)
class Contact:
    """A person's correctable details, as stored."""

    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    locale: str | None
    time_zone: str | None
    custom_fields: dict[str, str]


def corrected(current: Contact, patch: PersonPatch) -> Contact:
    """The details once the patch is applied (the fields it names, and only those)."""
    given = patch.model_fields_set
    pick = {
        name: getattr(patch, name) if name in given else getattr(current, name)
        for name in ("email", "phone", "first_name", "last_name", "locale", "time_zone")
    }
    return Contact(**pick, custom_fields=current.custom_fields)


def consent_changes(patch: ConsentPatch, *, at: datetime, actor: str) -> dict[str, Any]:
    """The per-category entries a correction records."""
    entry = {"at": at.isoformat(), "source": f"manual:{actor}"}
    changes = {c: {"granted": True, **entry} for c in patch.granted}
    changes |= {c: {"granted": False, **entry} for c in patch.withdrawn}
    return changes


def correction_event(
    lead_id: UUID,
    contact: Contact,
    *,
    granted: list[str],
    withdrawn: list[str] | None = None,
    key: bytes,
    actor: str,
    at: datetime,
) -> LeadUpdatedV2:
    """funnel.lead.updated.v2, source "manual": the person's details sealed as a capture does.

    Consent granted by hand travels as a consent given now, a withdrawal as
    `consent_withdrawn` (the notifier stops the touches of those categories).
    """
    person = contact_data(contact, contact.custom_fields)
    consent = (
        Consent(text=f"recorded by {actor}", categories=tuple(granted), given_at=at)
        if granted
        else None
    )
    return LeadUpdatedV2(
        lead_id=lead_id,
        personal_data=seal(person, key=key, lead_id=lead_id, event_type=LeadUpdatedV2.event_type),
        has_email=contact.email is not None,
        has_phone=contact.phone is not None,
        source="manual",
        consent=consent,
        locale=contact.locale,
        time_zone=contact.time_zone,
        updated_at=at,
        consent_withdrawn=tuple(withdrawn or ()),
    )
