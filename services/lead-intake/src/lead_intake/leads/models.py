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
from funnel_contracts.events.base import clear_answers, page_address
from funnel_contracts.sealed import seal
from funnel_servicekit.problems import FieldError
from lead_intake.common.sealing import contact_data
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
    # An ad platform's own ids of the ad that brought them (campaign_id, adgroup_id, ...).
    ad_ids: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "utm": self.utm.model_dump(exclude_none=True),
            "landing_page": self.landing_page,
            "referrer": self.referrer,
        }
        if self.ad_ids:
            out["ad_ids"] = dict(self.ad_ids)
        return out


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
    # A test lead (an ad platform's test, or set by an admin key): kept out of every count.
    test: bool = False


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
    imported_stage: str | None = None,
    stage_entered_at: datetime | None = None,
) -> LeadCapturedV2 | LeadUpdatedV2:
    """funnel.lead.captured.v2 for a new person, funnel.lead.updated.v2 for a known one
    (an imported contact's stage, if any, travels with the capture)."""
    person = contact_data(lead, sub.custom_fields).model_copy(
        update={
            "landing_page": sub.touchpoint.landing_page,
            "referrer": sub.touchpoint.referrer,
            "visitor_id": sub.visitor_id,
            "consent_text": sub.consent.text if sub.consent else None,
            "qualification": sub.qualification,
        }
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
        # pages' host and path, the consent's categories and time, answers that are choices
        # (decision 0054); the rest is sealed above.
        "landing_page": page_address(sub.touchpoint.landing_page),
        "referrer": page_address(sub.touchpoint.referrer),
        "source": source,
        "consent": sub.consent.model_copy(update={"text": ""}) if sub.consent else None,
        "qualification": clear_answers(sub.qualification),
        "locale": sub.locale,
        "time_zone": sub.time_zone,
    }
    if lead.created:
        return LeadCapturedV2(
            **common,
            utm=sub.touchpoint.utm,
            captured_at=at,
            imported_stage=imported_stage,
            stage_entered_at=stage_entered_at if imported_stage else None,
            test=sub.test,
        )
    return LeadUpdatedV2(**common, last_touch_utm=sub.touchpoint.utm, updated_at=at)


# --- merges (a merge is never undone) ------------------------------------------------------


class MergeRefused(ValueError):
    """A merge that cannot be made: the answer's status, the field at fault and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message


def merge_order(
    a: dict[str, Any] | None, b: dict[str, Any] | None, a_id: UUID, b_id: UUID
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(survivor, other): the older lead survives. MergeRefused for a lead merged into itself
    (422), an unknown one (404), an erased one (410), one merged already (409)."""
    if a_id == b_id:
        raise MergeRefused(422, "other_lead_id", "a lead cannot be merged into itself")
    for row, name, lead_id in ((a, "lead_id", a_id), (b, "other_lead_id", b_id)):
        if row is None:
            raise MergeRefused(404, name, f"no lead {lead_id}")
    assert a is not None
    assert b is not None
    for row, name in ((a, "lead_id"), (b, "other_lead_id")):
        if row["erased_at"] is not None:
            raise MergeRefused(410, name, "the person was erased")
        if row["merged_into"] is not None:
            raise MergeRefused(409, name, f"merged into {row['merged_into']} already")
    older = min((a, b), key=lambda r: (r["captured_at"], r["created_at"], str(r["id"])))
    return older, (b if older is a else a)


def merged_fields(survivor: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The survivor's fields after the merge: its own, its empty ones filled from the other,
    the newer consent, custom fields of both (its own winning); a test lead only when both
    were (a real person merged with a test lead is real)."""
    out = {
        k: survivor[k] if survivor[k] is not None else other[k]
        for k in ("email", "phone", "first_name", "last_name", "locale", "time_zone")
    }
    out["takes_email"] = survivor["email"] is None and other["email"] is not None
    consents = [c for c in (survivor["consent"], other["consent"]) if c]
    out["consent"] = max(consents, key=lambda c: str(c.get("given_at", ""))) if consents else None
    out["custom_fields"] = {**(other["custom_fields"] or {}), **(survivor["custom_fields"] or {})}
    out["is_test"] = bool(survivor["is_test"] and other["is_test"])
    return out


# The source of the lead update a merge emits (the survivor's details as they now are).
MERGE = "merge"


def merge_update_event(lead: Lead, sub: Submission, *, key: bytes, at: datetime) -> LeadUpdatedV2:
    """funnel.lead.updated.v2 of a merge's survivor: its details after the merge (sealed)."""
    person = contact_data(lead, sub.custom_fields)
    return LeadUpdatedV2(
        lead_id=lead.id,
        personal_data=seal(person, key=key, lead_id=lead.id, event_type=LeadUpdatedV2.event_type),
        has_email=lead.email is not None,
        has_phone=lead.phone is not None,
        source=MERGE,
        consent=sub.consent,
        locale=sub.locale,
        time_zone=sub.time_zone,
        updated_at=at,
    )
