"""Ad-platform payloads into form values, and their signatures (pure)."""

import base64
import hashlib
import hmac

import pytest

from lead_intake.webhooks.models import (
    PayloadInvalid,
    SignatureInvalid,
    generic_lead,
    google_ads_lead,
    meta_lead_ids,
    meta_values,
    typeform_lead,
    verify_hex_signature,
    verify_shared_key,
    verify_typeform_signature,
)

BODY = b'{"object":"page"}'


def test_hex_signatures() -> None:
    good = "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    verify_hex_signature("s3cret", BODY, good)
    for bad in (None, "", good.replace("sha256=", "sha1="), good[:-1] + "0", "sha256=" + "0" * 64):
        with pytest.raises(SignatureInvalid):
            verify_hex_signature("s3cret", BODY, bad)
    with pytest.raises(SignatureInvalid):
        verify_hex_signature("s3cret", BODY + b" ", good)  # the body changed


def test_typeform_signature_is_base64() -> None:
    good = "sha256=" + base64.b64encode(hmac.new(b"k", BODY, hashlib.sha256).digest()).decode()
    verify_typeform_signature("k", BODY, good)
    with pytest.raises(SignatureInvalid):
        verify_typeform_signature("other", BODY, good)


def test_shared_key() -> None:
    verify_shared_key("abc", "abc")
    for bad in ("abd", None, 123):
        with pytest.raises(SignatureInvalid):
            verify_shared_key("abc", bad)


def test_meta_notice_and_lead() -> None:
    notice = {
        "object": "page",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {"field": "feed", "value": {}},
                    {"field": "leadgen", "value": {"leadgen_id": 77}},
                ],
            }
        ],
    }
    assert meta_lead_ids(notice) == [("77", {"leadgen_id": 77})]
    with pytest.raises(PayloadInvalid):
        meta_lead_ids({"object": "user"})
    with pytest.raises(PayloadInvalid) as exc:
        meta_lead_ids(
            {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]}
        )
    assert exc.value.field == "entry.0.changes.0.value.leadgen_id"
    values = meta_values(
        {
            "field_data": [
                {"name": "full_name", "values": ["Ada King Lovelace"]},
                {"name": "q1", "values": ["yes"]},
            ]
        },
        {"q1": "answer"},
    )
    assert values == {"first_name": "Ada", "last_name": "King Lovelace", "answer": "yes"}


def test_typeform_answers_by_ref_else_by_type() -> None:
    payload = {
        "event_type": "form_response",
        "form_response": {
            "token": "t1",
            "hidden": {"utm_medium": "social", "secret": "x"},
            "answers": [
                {"type": "email", "email": "a@example.com", "field": {"ref": "unmapped"}},
                {"type": "choices", "choices": {"labels": ["A", "B"]}, "field": {"ref": "many"}},
                {"type": "boolean", "boolean": True, "field": {"ref": "ok"}},
                {"type": "text", "text": "dropped", "field": {"ref": "not-in-map"}},
            ],
        },
    }
    lead = typeform_lead(payload, {"many": "picks", "ok": "agreed"})
    assert lead.external_id == "t1"
    assert lead.values == {
        "email": "a@example.com",
        "picks": "A, B",
        "agreed": True,
        "utm_medium": "social",
    }
    with pytest.raises(PayloadInvalid):
        typeform_lead({"event_type": "form_response", "form_response": {}}, {})


def test_google_columns_and_key() -> None:
    lead, key = google_ads_lead(
        {
            "lead_id": "L1",
            "google_key": "k",
            "user_column_data": [
                {"column_id": "EMAIL", "string_value": "g@example.com"},
                {"column_id": "CITY", "string_value": "Oslo"},
            ],
        },
        {"CITY": "city"},
    )
    assert (lead.external_id, lead.values, key) == (
        "L1",
        {"email": "g@example.com", "city": "Oslo"},
        "k",
    )
    assert lead.test is False
    with pytest.raises(PayloadInvalid):
        google_ads_lead({"user_column_data": []}, {})


def test_a_google_test_lead_is_a_test_lead() -> None:
    columns = [{"column_id": "EMAIL", "string_value": "t@example.com"}]
    lead, _ = google_ads_lead({"lead_id": "T", "is_test": True, "user_column_data": columns}, {})
    assert (lead.test, lead.values) == (True, {"email": "t@example.com"})


def test_generic_dotted_paths() -> None:
    lead = generic_lead(
        {"id": 5, "a": {"b": [{"c": "x@example.com"}]}}, {"a.b.0.c": "email", "a.z": "first_name"}
    )
    assert (lead.external_id, lead.values) == ("5", {"email": "x@example.com"})
    with pytest.raises(PayloadInvalid):
        generic_lead({"a": 1}, {"a": "email"})  # no id
    with pytest.raises(PayloadInvalid):
        generic_lead({"id": 1}, {})  # nothing mapped
