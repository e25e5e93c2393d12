"""The lead events a capture emits, with the person's details sealed under their key (pure).

Only v2 is written: no email, phone, name or custom field travels in the clear, so deleting the
person's key on erasure leaves nothing readable on the topics (docs/decisions/0010).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from funnel_contracts import LeadCapturedV2, LeadUpdatedV2
from funnel_contracts.sealed import PersonalData, seal
from lead_intake.forms import Form
from lead_intake.store.leads import Lead
from lead_intake.submission import Submission


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
        "landing_page": sub.touch.landing_page,
        "referrer": sub.touch.referrer,
        "source": source,
        "visitor_id": sub.visitor_id,
        "consent": sub.consent,
        "qualification": sub.qualification,
        "locale": sub.locale,
        "time_zone": sub.time_zone,
    }
    if lead.created:
        return LeadCapturedV2(**common, utm=sub.touch.utm, captured_at=at)
    return LeadUpdatedV2(**common, last_touch_utm=sub.touch.utm, updated_at=at)
