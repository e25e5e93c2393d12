"""Activities as reported, and their contract event (pure)."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from pydantic import ValidationError

from funnel_contracts.sealed import SealError, new_data_key, unseal
from funnel_servicekit.problems import field_error
from lead_intake.activities.models import (
    ActivityBatch,
    ActivityIn,
    Known,
    Owner,
    StoredActivity,
    activity_event,
    email_sha256,
    owner,
    unknown_people,
)

T = datetime(2026, 11, 1, tzinfo=UTC)
# A stored activity of no one yet; each test replaces what it is about.
STORED = StoredActivity(uuid4(), None, None, "page_view", T, T, None, {})


def test_an_activity_names_its_person_and_a_purchase_its_price_and_order() -> None:
    with pytest.raises(ValidationError, match="lead_id, email or visitor_id"):
        ActivityIn(type="page_view", occurred_at=T)
    with pytest.raises(ValidationError, match="amount and currency"):
        ActivityIn(type="refund_issued", occurred_at=T, visitor_id="v-12345678")
    with pytest.raises(ValidationError, match="order_id"):
        ActivityIn(
            type="purchase_completed",
            occurred_at=T,
            visitor_id="v-12345678",
            amount=Decimal(1),
            currency="EUR",
        )
    ok = ActivityIn(type="survey_answered", occurred_at=T, email=" A@Example.com ")
    assert ok.email == "a@example.com"


def test_properties_are_bounded() -> None:
    with pytest.raises(ValidationError, match="at most 50"):
        ActivityIn(
            type="x",
            occurred_at=T,
            visitor_id="v-12345678",
            properties={str(i): i for i in range(51)},
        )
    with pytest.raises(ValidationError, match="up to 1000"):
        ActivityIn(type="x", occurred_at=T, visitor_id="v-12345678", properties={"k": "v" * 1001})


def test_a_batch_holds_one_to_five_hundred() -> None:
    one = {"type": "page_view", "occurred_at": T.isoformat(), "visitor_id": "v-12345678"}
    assert len(ActivityBatch.model_validate({"activities": [one] * 500}).activities) == 500
    with pytest.raises(ValidationError):
        ActivityBatch.model_validate({"activities": [one] * 501})


def test_the_event_carries_what_was_stored() -> None:
    activity = ActivityIn(
        type="purchase_completed",
        occurred_at=T,
        lead_id=uuid4(),
        amount=Decimal("9.5"),
        currency="SEK",
        order_id="o1",
        utm={"source": "mail"},
        page_url="https://shop.example.com/checkout?email=ada%40example.com",
        properties={  # type: ignore[arg-type]
            "sku": "A1",
            "text": "Ada called back",
            "phone": 4915112345678,
            "quantity": 2,
            "gift": True,
            "ada@example.com": "x",
        },
    )
    lead_id, activity_id = uuid4(), uuid4()
    key = new_data_key()
    stored = replace(STORED, id=activity_id, activity_type=activity.type, order_id="o1")
    event = activity_event(replace(stored, details=activity.details()), lead_id, key)
    # The page's host and path only: its query string may name the person.
    assert event.page_url == "shop.example.com/checkout"
    assert event.visitor_id is None
    assert (event.amount, event.currency, event.order_id) == (Decimal("9.5"), "SEK", "o1")
    assert event.utm is not None
    assert event.utm.source == "mail"
    # In the clear only choices, small numbers and booleans; a note's text, a long number
    # and a key that is not a choice travel only sealed (decision 0054).
    assert event.properties == {"sku": "A1", "text": "*", "phone": "*", "quantity": 2, "gift": True}
    assert event.lead_id == lead_id
    assert event.personal_data is not None
    whole = unseal(event.personal_data, key=key, lead_id=lead_id, event_type=event.event_type)
    assert whole.properties == activity.properties
    assert whole.page_url == "https://shop.example.com/checkout?email=ada%40example.com"
    with pytest.raises(SealError):
        unseal(
            event.personal_data, key=new_data_key(), lead_id=lead_id, event_type=event.event_type
        )


def test_without_a_key_nothing_is_sealed_and_the_clear_copy_stays_choices() -> None:
    note = {"properties": {"text": "likes", "outcome": "reached"}}
    event = activity_event(replace(STORED, activity_type="note_added", details=note), uuid4(), None)
    assert event.personal_data is None
    assert event.properties == {"text": "*", "outcome": "reached"}


def _batch(*items: dict[str, object]) -> ActivityBatch:
    base = {"type": "page_view", "occurred_at": T.isoformat()}
    return ActivityBatch.model_validate({"activities": [base | i for i in items]})


def test_whose_activity_an_unknown_email_or_visitor_waits_an_unknown_lead_id_is_refused() -> None:
    lead, other = uuid4(), uuid4()
    known = Known(frozenset({lead}), {"k@example.com": lead}, {"v-known-01": lead})
    batch = _batch(
        {"lead_id": str(lead)},
        {"email": "K@example.com"},
        {"email": "new@example.com", "visitor_id": "v-known-01"},  # the email decides
        {"visitor_id": "v-known-01"},
        {"visitor_id": "v-stranger"},
        {"lead_id": str(other)},
    )
    owners = [owner(i, a, known) for i, a in enumerate(batch.activities)]

    assert owners[:2] == [Owner(lead), Owner(lead)]
    assert owners[2] == Owner(None, email_sha256("new@example.com"))
    assert owners[3:5] == [Owner(lead), Owner(None)]
    assert owners[5] == field_error("activities.5.lead_id", "no such lead")
    assert unknown_people(batch, known) == (["new@example.com"], ["v-stranger"])


def test_a_waiting_email_is_named_by_its_hash_only() -> None:
    digest = email_sha256("new@example.com")
    assert len(digest) == 64
    assert "new" not in digest
    assert digest == email_sha256("new@example.com")
