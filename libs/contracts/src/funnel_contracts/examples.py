"""Example events for tests: valid contract events with plain defaults, any field overridden.

One place builds sample events, so a test says only what matters to it (`stage_changed(
to_stage="desire")`) and a contract change is made here once, not in every service's tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from funnel_contracts.events import ActivityRecorded, LeadCaptured, LeadCapturedV2, StageChanged
from funnel_contracts.sealed import PersonalData, new_data_key, seal


def stage_changed(**fields: Any) -> StageChanged:
    """A lead entered a stage (a first entry from nowhere unless `from_stage` says)."""
    defaults: dict[str, Any] = {
        "lead_id": uuid4(),
        "funnel_id": "digital-sales",
        "funnel_version": 1,
        "from_stage": None,
        "to_stage": "awareness",
        "to_stage_position": 0,
        "reason": "test",
        "changed_at": datetime.now(UTC),
    }
    return StageChanged(**(defaults | fields))


def lead_captured(**fields: Any) -> LeadCaptured:
    """A person captured by the demo form (v1: the personal data in clear)."""
    defaults: dict[str, Any] = {
        "lead_id": uuid4(),
        "submission_id": uuid4(),
        "form_id": "demo",
        "funnel_id": "digital-sales",
        "email": "ada@example.com",
        "captured_at": datetime.now(UTC),
    }
    return LeadCaptured(**(defaults | fields))


def lead_captured_v2(
    person: PersonalData | None = None, *, key: bytes | None = None, **fields: Any
) -> LeadCapturedV2:
    """A person captured by the demo form (v2: `person` sealed with `key`, a fresh key unless
    given; `event_type` in `fields` seals it for that type of event instead)."""
    person = person or PersonalData(email="ada@example.com", first_name="Ada")
    lead_id = fields.pop("lead_id", None) or uuid4()
    event_type = fields.pop("event_type", LeadCapturedV2.event_type)
    defaults: dict[str, Any] = {
        "lead_id": lead_id,
        "personal_data": seal(
            person, key=key or new_data_key(), lead_id=lead_id, event_type=event_type
        ),
        "has_email": person.email is not None,
        "has_phone": person.phone is not None,
        "submission_id": uuid4(),
        "form_id": "demo",
        "funnel_id": "digital-sales",
        "captured_at": datetime.now(UTC),
    }
    return LeadCapturedV2(**(defaults | fields))


def activity_recorded(**fields: Any) -> ActivityRecorded:
    """Something a lead did (a page view unless `activity_type` says), recorded when it
    happened unless `recorded_at` says otherwise."""
    at = fields.get("occurred_at") or datetime.now(UTC)
    defaults: dict[str, Any] = {
        "lead_id": uuid4(),
        "activity_id": uuid4(),
        "activity_type": "page_view",
        "occurred_at": at,
        "recorded_at": at,
    }
    return ActivityRecorded(**(defaults | fields))
