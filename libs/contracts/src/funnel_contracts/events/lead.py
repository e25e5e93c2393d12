"""Lead events (topic funnel.lead-events), emitted by lead-intake."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from funnel_contracts import topics
from funnel_contracts.events.base import EventData, Utm, ValueModel

CAPTURE_SOURCES = ("form", "import", "meta-lead-ads", "typeform", "google-ads", "webhook")


class Consent(ValueModel):
    """What the person agreed to, with the text they saw and when."""

    text: str = Field(max_length=4000)
    text_version: str | None = Field(default=None, max_length=100)
    categories: tuple[str, ...] = Field(default=(), description="e.g. marketing, product-news")
    given_at: datetime


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
    source: str = Field(default="form", description=f"One of {', '.join(CAPTURE_SOURCES)}.")
    visitor_id: str | None = Field(default=None, description="Anonymous visitor id, if known.")
    consent: Consent | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)
    qualification: dict[str, str] = Field(
        default_factory=dict, description="Answers to budget, authority, need, timing."
    )
    locale: str | None = Field(default=None, description="BCP 47, e.g. sv-SE, zh-Hant.")
    time_zone: str | None = Field(default=None, description="IANA, e.g. Europe/Stockholm.")


class LeadUpdated(EventData):
    """A known lead submitted again or was enriched: the latest details and last touch."""

    event_type: ClassVar[str] = "funnel.lead.updated.v1"
    topic: ClassVar[str] = topics.LEAD_EVENTS

    submission_id: UUID | None = None
    form_id: str | None = None
    funnel_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    last_touch_utm: Utm = Field(default_factory=Utm)
    landing_page: str | None = None
    referrer: str | None = None
    source: str = "form"
    visitor_id: str | None = None
    consent: Consent | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)
    qualification: dict[str, str] = Field(default_factory=dict)
    locale: str | None = None
    time_zone: str | None = None
    updated_at: datetime


class Sealed(ValueModel):
    """Personal data sealed with the lead's own data key (AES-256-GCM; funnel_contracts.sealed).

    Once the lead is erased the key is gone, and so is every way to read this.
    """

    alg: Literal["A256GCM"] = Field(description="AES-256-GCM with a 256-bit key per lead.")
    nonce: str = Field(
        pattern=r"^[A-Za-z0-9_-]{16}$", description="The 96-bit nonce, base64url unpadded."
    )
    ciphertext: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$",
        max_length=64_000,
        description="The sealed JSON document and its 128-bit tag, base64url unpadded.",
    )


class _LeadDetailsV2(EventData):
    """What v2 lead events share: no personal data in the clear, only sealed."""

    personal_data: Sealed = Field(
        description="email, phone, first_name, last_name, custom_fields, and the full "
        "landing_page and referrer URLs, the visitor_id, the consent_text and the whole "
        "qualification answers, sealed for this "
        "lead and this event type; only services given the lead's data key can read it."
    )
    has_email: bool
    has_phone: bool
    landing_page: str | None = Field(
        default=None, description="Host and path only (the full URL is sealed)."
    )
    referrer: str | None = Field(
        default=None, description="Host and path only (the full URL is sealed)."
    )
    visitor_id: str | None = Field(
        default=None, description="Always null since the id is sealed (personal_data)."
    )
    consent: Consent | None = Field(
        default=None, description="Categories, version and time; its text is sealed (empty)."
    )
    qualification: dict[str, str] = Field(
        default_factory=dict,
        description="Answers to budget, authority, need, timing: a one-word choice as given, "
        "any other answer '*' (answered; the words are sealed in personal_data).",
    )
    locale: str | None = Field(default=None, description="BCP 47, e.g. sv-SE, zh-Hant.")
    time_zone: str | None = Field(default=None, description="IANA, e.g. Europe/Stockholm.")


class LeadCapturedV2(_LeadDetailsV2):
    """A person gave contact details for the first time (by email, or by phone alone)."""

    event_type: ClassVar[str] = "funnel.lead.captured.v2"
    topic: ClassVar[str] = topics.LEAD_EVENTS

    submission_id: UUID
    form_id: str
    funnel_id: str
    utm: Utm = Field(default_factory=Utm)
    captured_at: datetime
    source: str = Field(default="form", description=f"One of {', '.join(CAPTURE_SOURCES)}.")
    imported_stage: str | None = Field(
        default=None,
        max_length=100,
        description="An imported contact's stage in the funnel, as the other tool had it: "
        "the tracker moves the new lead there (journey reason `imported`).",
    )
    stage_entered_at: datetime | None = Field(
        default=None, description="When the imported contact entered `imported_stage`."
    )
    test: bool = Field(
        default=False,
        description="A test lead (an ad platform's test, or set by an admin key): stored and "
        "found, left out of every report, playbook and funnel count.",
    )


class LeadUpdatedV2(_LeadDetailsV2):
    """A known lead submitted again or was enriched: the latest details (sealed), last touch."""

    event_type: ClassVar[str] = "funnel.lead.updated.v2"
    topic: ClassVar[str] = topics.LEAD_EVENTS

    submission_id: UUID | None = None
    form_id: str | None = None
    funnel_id: str | None = None
    last_touch_utm: Utm = Field(default_factory=Utm)
    source: str = "form"
    updated_at: datetime
    consent_withdrawn: tuple[str, ...] = Field(
        default=(),
        description="Consent categories withdrawn at updated_at (a correction made by hand); "
        "the categories granted travel in `consent`.",
    )


MERGE_REASONS = ("manual", "same_phone")


class LeadMerged(EventData):
    """Two leads proved to be one person: `merged_lead_id` is folded into `lead_id` (the
    older lead, which survives). Every service folds what it keeps of the two into one; a
    merge is never undone."""

    event_type: ClassVar[str] = "funnel.lead.merged.v1"
    topic: ClassVar[str] = topics.LEAD_EVENTS

    merged_lead_id: UUID
    reason: str = Field(description=f"One of {', '.join(MERGE_REASONS)}.")
    actor: str | None = Field(default=None, description="The key's name, for a manual merge.")
    merged_at: datetime


class LeadErased(EventData):
    """A person asked to be forgotten: every service removes their personal data."""

    event_type: ClassVar[str] = "funnel.lead.erased.v1"
    topic: ClassVar[str] = topics.LEAD_EVENTS

    request_id: UUID
    erased_at: datetime
