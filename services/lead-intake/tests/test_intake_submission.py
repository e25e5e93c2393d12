"""Validation and normalization of a form post (pure)."""

import pytest
from pydantic import ValidationError

from lead_intake.submission import SubmissionIn, normalize_email


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Ada@Example.COM ", "ada@example.com"),
        ("ada.lovelace+promo@example.com", "ada.lovelace+promo@example.com"),
        ("BJÖRN@exämple.se", "björn@exämple.se"),
    ],
)
def test_email_is_trimmed_and_lower_cased(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not-an-email",
        "a@",
        "@example.com",
        "a b@example.com",
        "ada@example.com\r\nBcc: x@example.com",
    ],
)
def test_invalid_emails_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a valid email"):
        normalize_email(raw)


def test_submission_requires_email_and_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError) as missing:
        SubmissionIn.model_validate({"first_name": "Ada"})
    assert [e["loc"] for e in missing.value.errors()] == [("email",)]
    with pytest.raises(ValidationError) as extra:
        SubmissionIn.model_validate({"email": "a@example.com", "surprise": 1})
    assert [e["loc"] for e in extra.value.errors()] == [("surprise",)]


def test_submission_carries_utm_and_trims_names() -> None:
    sub = SubmissionIn.model_validate(
        {
            "email": "A@Example.com",
            "first_name": "  Ada ",
            "utm_source": "google",
            "utm_medium": "cpc",
            "utm_campaign": "brand",
        }
    )
    assert sub.email == "a@example.com"
    assert sub.first_name == "Ada"
    assert (sub.utm.source, sub.utm.medium, sub.utm.campaign) == ("google", "cpc", "brand")
    assert sub.utm.term is None


def test_overlong_fields_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        SubmissionIn.model_validate({"email": "a@example.com", "first_name": "x" * 101})
    assert exc.value.errors()[0]["loc"] == ("first_name",)
