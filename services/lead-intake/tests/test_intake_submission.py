"""A form post checked against its form and normalized (pure)."""

from datetime import UTC, datetime

import pytest

from lead_intake.forms.models import FieldSpec, FormSettings
from lead_intake.leads.models import SubmissionInvalid
from lead_intake.submissions.models import (
    is_honeypot_filled,
    parse_submission,
    utm_from_url,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLAIN = FormSettings()


def fields_at_fault(values: dict[str, object], form: FormSettings = PLAIN) -> list[str]:
    with pytest.raises(SubmissionInvalid) as exc:
        parse_submission(values, form, now=NOW)
    return [e["field"] for e in exc.value.errors]


def test_email_is_required_by_default_and_unknown_fields_are_refused() -> None:
    assert fields_at_fault({"first_name": "Ada"}) == ["email"]
    assert fields_at_fault({"email": "a@example.com", "surprise": 1}) == ["surprise"]
    assert fields_at_fault({"email": "a@example.com", "first_name": "x" * 101}) == ["first_name"]


def test_every_fault_is_named_at_once() -> None:
    faults = fields_at_fault(
        {"email": "nope", "phone": "12", "locale": "!!", "time_zone": "Mars/Base"}
    )
    assert faults == ["email", "phone", "locale", "time_zone"]


def test_a_submission_is_normalized_with_its_touchpoint() -> None:
    sub = parse_submission(
        {
            "email": " A@Example.com",
            "first_name": "  Ada ",
            "utm_source": "google",
            "landing_page": "https://shop.example.com/?utm_source=ignored&utm_medium=cpc&utm_term=shoes",
            "locale": "sv-SE",
            "time_zone": "Europe/Stockholm",
            "visitor_id": "v-1234567890",
            "need": "new CRM",
        },
        PLAIN,
        now=NOW,
    )
    assert (sub.email, sub.first_name) == ("a@example.com", "Ada")
    assert (sub.touchpoint.utm.source, sub.touchpoint.utm.medium, sub.touchpoint.utm.term) == (
        "google",
        "cpc",
        "shoes",
    )
    assert (sub.locale, sub.time_zone, sub.visitor_id) == (
        "sv-SE",
        "Europe/Stockholm",
        "v-1234567890",
    )
    assert sub.qualification == {"need": "new CRM"}
    assert sub.consent is None


def test_the_referer_is_the_landing_page_of_a_plain_post() -> None:
    sub = parse_submission(
        {"email": "a@example.com"},
        PLAIN,
        now=NOW,
        page_url="https://lp.example.com/x?utm_campaign=c1",
    )
    assert sub.touchpoint.landing_page == "https://lp.example.com/x?utm_campaign=c1"
    assert sub.touchpoint.utm.campaign == "c1"
    ignored = parse_submission({"email": "a@example.com"}, PLAIN, now=NOW, page_url="javascript:x")
    assert ignored.touchpoint.landing_page is None


def test_declared_fields_are_typed_and_bounded() -> None:
    form = FormSettings(
        fields=(
            FieldSpec(name="size", type="select", options=("s", "m"), required=True),
            FieldSpec(name="seats", type="number"),
            FieldSpec(name="start", type="date"),
            FieldSpec(name="newsletter", type="checkbox"),
            FieldSpec(name="site", type="url"),
            FieldSpec(name="note", max_length=5),
        )
    )
    sub = parse_submission(
        {
            "email": "a@example.com",
            "size": "m",
            "seats": "12",
            "start": "2026-12-01",
            "newsletter": "on",
            "site": "https://x.example",
        },
        form,
        now=NOW,
    )
    assert sub.custom_fields == {
        "size": "m",
        "seats": "12",
        "start": "2026-12-01",
        "newsletter": "true",
        "site": "https://x.example",
    }
    bad = {
        "email": "a@example.com",
        "size": "xl",
        "seats": "many",
        "start": "tomorrow",
        "site": "ftp://x",
        "note": "toolong",
    }
    assert fields_at_fault(bad, form) == ["note", "size", "seats", "start", "site"]
    assert fields_at_fault({"email": "a@example.com"}, form) == ["size"]


def test_phone_can_stand_for_email_when_the_form_says_so() -> None:
    form = FormSettings(
        fields=(FieldSpec(name="email", required=False),), default_phone_region="SE"
    )
    sub = parse_submission({"phone": "070 123 45 67"}, form, now=NOW)
    assert (sub.email, sub.phone) == (None, "+46701234567")
    assert fields_at_fault({"first_name": "Ada"}, form) == ["email"]


def test_consent_carries_the_forms_text_and_the_time() -> None:
    form = FormSettings(
        consent_text="Offers by email", consent_version="v2", consent_categories=("marketing",)
    )
    sub = parse_submission({"email": "a@example.com", "consent": "yes"}, form, now=NOW)
    assert sub.consent is not None
    assert (sub.consent.text, sub.consent.text_version, sub.consent.given_at) == (
        "Offers by email",
        "v2",
        NOW,
    )
    declined = parse_submission({"email": "a@example.com", "consent": "false"}, form, now=NOW)
    assert declined.consent is None
    required = FormSettings(consent_text="x", consent_required=True)
    assert fields_at_fault({"email": "a@example.com", "consent": "0"}, required) == ["consent"]


def test_unknown_fields_are_kept_bounded_when_allowed() -> None:
    form = FormSettings(allow_unknown_fields=True)
    sub = parse_submission({"email": "a@example.com", "colour": "teal", "n": 3}, form, now=NOW)
    assert sub.custom_fields == {"colour": "teal", "n": "3"}
    assert fields_at_fault({"email": "a@example.com", "essay": "x" * 1001}, form) == ["essay"]
    many = {"email": "a@example.com"} | {f"f{i}": "x" for i in range(51)}
    assert fields_at_fault(many, form) == ["f50"]


def test_repeated_or_nested_values_are_refused() -> None:
    assert fields_at_fault({"email": ["a@example.com", "b@example.com"]}) == ["email"]
    assert fields_at_fault({"email": "a@example.com", "first_name": {"x": 1}}) == ["first_name"]


def test_the_honeypot() -> None:
    assert is_honeypot_filled({"website": "http://spam"}, PLAIN)
    assert not is_honeypot_filled({"website": "  "}, PLAIN)
    assert not is_honeypot_filled({"email": "a@example.com"}, PLAIN)
    # the honeypot never counts as an unknown field
    assert (
        parse_submission({"email": "a@example.com", "website": ""}, PLAIN, now=NOW).custom_fields
        == {}
    )


def test_utm_from_url() -> None:
    utm = utm_from_url("https://x.example/?utm_source=a&utm_source=b&utm_content=c&other=1")
    assert (utm.source, utm.content, utm.medium) == ("a", "c", None)
    assert utm_from_url(None).source is None


def test_text_postgres_cannot_store_is_found_with_its_path() -> None:
    from lead_intake.common.text_rules import nul_path

    assert nul_path({"a": {"b": ["ok", "x\x00"]}}) == "a.b.1"
    assert nul_path({"k\x00": 1}) == "k?"
    assert nul_path("\x00") == "body"
    assert nul_path({"a": ["fine", 1, None]}) is None
