"""A person as a capture takes them, and the lead events it emits (pure).

Every way a lead arrives (a form post, an import, an ad platform) ends in a `Submission`; the
capture writes the lead and emits its event with the person's details sealed under their key.
Only v2 is written: no email, phone, name or custom field travels in the clear, so deleting the
person's key on erasure leaves nothing readable on the topics (docs/decisions/0010).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from funnel_contracts import Consent, LeadCapturedV2, LeadUpdatedV2, Utm
from funnel_contracts.events.base import page_address
from funnel_contracts.sealed import PersonalData, seal
from funnel_servicekit.problems import FieldError
from lead_intake.forms.models import Form


class SubmissionInvalid(ValueError):
    """The post breaks its form's rules; `errors` names each field at fault."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Touchpoint:
    """Where a person came from on one visit: the UTM tags, the page, the referrer."""

    utm: Utm = field(default_factory=Utm)
    landing_page: str | None = None
    referrer: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "utm": self.utm.model_dump(exclude_none=True),
            "landing_page": self.landing_page,
            "referrer": self.referrer,
        }


@dataclass(frozen=True)
class Submission:
    """A valid, normalized submission: who, from where, what they agreed to and answered."""

    email: str | None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    touchpoint: Touchpoint = field(default_factory=Touchpoint)
    visitor_id: str | None = None
    consent: Consent | None = None
    locale: str | None = None
    time_zone: str | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)
    qualification: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lead:
    """A lead's identity and contact details after this submission was applied."""

    id: UUID
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    captured_at: datetime
    created: bool
    # The submission written in the same statement as a new lead (None: write it apart).
    submission_id: UUID | None = None
    # The person's data key, made in that same statement (None: read or make it apart).
    data_key: bytes | None = None


@dataclass(frozen=True)
class SubmissionOrigin:
    """What a submission records beside the person and the capture's source and time."""

    form_id: str
    user_agent: str | None
    ip_truncated: str | None


@dataclass(frozen=True)
class Captured:
    lead_id: UUID
    submission_id: UUID | None
    new_lead: bool


def lead_event(
    lead: Lead,
    sub: Submission,
    form: Form,
    *,
    key: bytes,
    submission_id: UUID,
    source: str,
    at: datetime,
) -> LeadCapturedV2 | LeadUpdatedV2:
    """funnel.lead.captured.v2 for a new person, funnel.lead.updated.v2 for a known one."""
    person = PersonalData(
        email=lead.email,
        phone=lead.phone,
        first_name=lead.first_name,
        last_name=lead.last_name,
        custom_fields=sub.custom_fields,
        landing_page=sub.touchpoint.landing_page,
        referrer=sub.touchpoint.referrer,
        visitor_id=sub.visitor_id,
        consent_text=sub.consent.text if sub.consent else None,
    )
    event_type = (LeadCapturedV2 if lead.created else LeadUpdatedV2).event_type
    common = {
        "lead_id": lead.id,
        "personal_data": seal(person, key=key, lead_id=lead.id, event_type=event_type),
        "has_email": lead.email is not None,
        "has_phone": lead.phone is not None,
        "submission_id": submission_id,
        "form_id": form.id,
        "funnel_id": form.funnel_id,
        # In the clear only what the tracker and reporting use (docs/decisions/0043): the
        # pages' host and path, the consent's categories and time; the rest is sealed above.
        "landing_page": page_address(sub.touchpoint.landing_page),
        "referrer": page_address(sub.touchpoint.referrer),
        "source": source,
        "consent": sub.consent.model_copy(update={"text": ""}) if sub.consent else None,
        "qualification": sub.qualification,
        "locale": sub.locale,
        "time_zone": sub.time_zone,
    }
    if lead.created:
        return LeadCapturedV2(**common, utm=sub.touchpoint.utm, captured_at=at)
    return LeadUpdatedV2(**common, last_touch_utm=sub.touchpoint.utm, updated_at=at)
