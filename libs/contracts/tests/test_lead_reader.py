"""One reader for v1 and v2, captured and updated lead events."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from funnel_contracts import (
    LeadCaptured,
    LeadCapturedV2,
    LeadErased,
    LeadUpdated,
    LeadUpdatedV2,
    Utm,
)
from funnel_contracts.lead_reader import lead_details
from funnel_contracts.sealed import PersonalData, new_data_key, seal

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def test_v1_capture_reads_in_the_clear_and_names_its_first_touch() -> None:
    lead = uuid4()
    event = LeadCaptured(
        lead_id=lead,
        submission_id=uuid4(),
        form_id="f",
        funnel_id="digital-sales",
        email="ada@example.com",
        first_name="Ada",
        utm=Utm(source="news"),
        captured_at=AT,
        qualification={"budget": "high"},
    )
    details = lead_details(event)
    assert details is not None
    assert (details.new, details.at, details.utm.source, details.funnel_id) == (
        True,
        AT,
        "news",
        "digital-sales",
    )
    assert details.qualification == {"budget": "high"}
    assert not details.needs_key
    person = details.person(None)
    assert person is not None
    assert (person.email, person.first_name) == ("ada@example.com", "Ada")


def test_v2_update_reads_its_last_touch_and_unseals_only_with_the_key() -> None:
    lead, key = uuid4(), new_data_key()
    sealed = seal(
        PersonalData(email="bo@example.com"),
        key=key,
        lead_id=lead,
        event_type=LeadUpdatedV2.event_type,
    )
    event = LeadUpdatedV2(
        lead_id=lead,
        personal_data=sealed,
        has_email=True,
        has_phone=False,
        last_touch_utm=Utm(campaign="spring"),
        updated_at=AT,
        consent_withdrawn=("marketing",),
    )
    details = lead_details(event)
    assert details is not None
    assert (details.new, details.utm.campaign, details.needs_key) == (False, "spring", True)
    assert details.consent_withdrawn == ("marketing",)
    assert details.person(None) is None  # erased: no key, nothing readable
    person = details.person(key)
    assert person is not None
    assert person.email == "bo@example.com"


def test_v2_capture_and_v1_update_and_other_events() -> None:
    lead, key = uuid4(), new_data_key()
    captured = LeadCapturedV2(
        lead_id=lead,
        submission_id=uuid4(),
        form_id="f",
        funnel_id="b2b",
        personal_data=seal(
            PersonalData(phone="+46701234567"),
            key=key,
            lead_id=lead,
            event_type=LeadCapturedV2.event_type,
        ),
        has_email=False,
        has_phone=True,
        captured_at=AT,
    )
    details = lead_details(captured)
    assert details is not None
    assert details.new
    assert details.funnel_id == "b2b"
    person = details.person(key)
    assert person is not None
    assert person.phone == "+46701234567"
    updated = lead_details(LeadUpdated(lead_id=lead, email="x@example.com", updated_at=AT))
    assert updated is not None
    assert not updated.new
    assert updated.submission_id is None
    assert lead_details(LeadErased(lead_id=lead, request_id=uuid4(), erased_at=AT)) is None
