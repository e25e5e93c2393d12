"""Webhook secrets per form and Meta form mappings (pure)."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from lead_intake.webhooks.models import (
    FormSecret,
    MetaForm,
    MetaFormIn,
    SecretIn,
    SecretOut,
    SignatureInvalid,
    field_map_for,
    hint,
    meta_form_id,
    new_secret,
    verify_any,
    verify_hex_signature,
)

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_the_previous_secret_is_valid_only_until_its_grace_ends() -> None:
    rotated = FormSecret("generic", "new-secret", NOW, "old-secret", NOW + timedelta(hours=1))

    assert rotated.valid(NOW) == ["new-secret", "old-secret"]
    assert rotated.valid(NOW + timedelta(hours=1)) == ["new-secret"]
    assert FormSecret("generic", "only", NOW).valid(NOW) == ["only"]


def test_a_delivery_passes_with_any_valid_secret_and_fails_with_none() -> None:
    body = b'{"id": 1}'

    def signed(secret: str) -> str:
        return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    header = signed("old-secret")
    verify_any(["new-secret", "old-secret"], lambda s: verify_hex_signature(s, body, header))
    with pytest.raises(SignatureInvalid):
        verify_any(["new-secret"], lambda s: verify_hex_signature(s, body, header))
    with pytest.raises(SignatureInvalid):
        verify_any([], lambda s: verify_hex_signature(s, body, header))


def test_the_api_shows_hints_and_a_secret_only_when_it_made_it() -> None:
    made = new_secret()
    stored = FormSecret("typeform", made, NOW, "caller-chosen-0001", NOW + timedelta(hours=1))

    shown = SecretOut.of(stored, now=NOW)
    generated = SecretOut.of(stored, now=NOW, generated=True)
    later = SecretOut.of(stored, now=NOW + timedelta(days=1))

    assert made.startswith("whsec_")
    assert len(made) > 40
    assert (shown.hint, shown.previous_hint, shown.secret) == (hint(made), "…0001", None)
    assert made not in shown.model_dump_json()
    assert generated.secret == made
    assert (later.previous_hint, later.previous_valid_until) == (None, None)


def test_a_chosen_secret_is_long_printable_and_the_grace_bounded() -> None:
    assert SecretIn().previous_valid_seconds == 24 * 3600
    for bad in (
        {"secret": "short"},
        {"secret": "has a space in it!!"},
        {"previous_valid_seconds": -1},
    ):
        with pytest.raises(ValidationError):
            SecretIn.model_validate(bad)


def test_a_meta_form_names_its_questions_first_then_the_form() -> None:
    mapping = MetaForm(
        meta_form_id="123",
        form_id="webinar",
        field_map={"company_name": "company", "budget_q": "budget"},
    )

    assert meta_form_id({"form_id": 123}) == "123"
    assert meta_form_id({"form_id": "456"}) == "456"
    assert meta_form_id({"form_id": True}) is None
    assert meta_form_id({}) is None
    assert field_map_for({"budget_q": "timing", "other": "need"}, mapping) == {
        "budget_q": "budget",
        "other": "need",
        "company_name": "company",
    }
    assert field_map_for({"a": "b"}, None) == {"a": "b"}
    with pytest.raises(ValidationError):
        MetaFormIn(form_id="webinar", field_map={"q": "Not A Field"})
