"""A form's definition and its rules (pure)."""

import pytest
from pydantic import ValidationError

from lead_intake.forms.models import Form, FormIn, FormPatch, FormSettings


def test_origins_are_normalized_and_matched() -> None:
    form = FormSettings(allowed_origins=["https://Shop.Example.com", "http://localhost:8080/"])  # type: ignore[arg-type]
    assert form.allowed_origins == ("https://shop.example.com", "http://localhost:8080")
    assert form.allows_origin("https://SHOP.example.com")
    assert not form.allows_origin("https://shop.example.com.evil.example")
    assert FormSettings(allowed_origins=["*"]).allows_origin("https://any.example")  # type: ignore[arg-type]
    assert not FormSettings().allows_origin("https://any.example")


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"allowed_origins": ["shop.example.com"]}, "allowed_origins"),
        ({"allowed_origins": ["https://user@shop.example.com"]}, "allowed_origins"),
        ({"default_phone_region": "ZZ"}, "default_phone_region"),
        ({"thank_you_url": "/relative"}, "thank_you_url"),
        ({"rate_limit_per_form": "fast"}, "rate_limit_per_form"),
        ({"consent_required": True}, None),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, None),
        ({"fields": [{"name": "website"}]}, None),
        ({"fields": [{"name": "Bad Name"}]}, "fields"),
    ],
)
def test_bad_definitions_are_refused(settings: dict[str, object], field: str | None) -> None:
    with pytest.raises(ValidationError) as exc:
        FormSettings.model_validate(settings)
    if field is not None:
        assert exc.value.errors()[0]["loc"][0] == field


def test_a_patch_changes_only_what_it_names_and_is_validated_whole() -> None:
    form = Form(
        id="f",
        funnel_id="digital-sales",
        name="F",
        public_key="pk_x",
        settings=FormSettings(consent_text="ok", consent_required=True, default_phone_region="SE"),
    )
    patched = form.patched(FormPatch(name="G"))
    assert isinstance(patched, FormIn)
    assert (patched.name, patched.consent_required, patched.default_phone_region) == (
        "G",
        True,
        "SE",
    )
    with pytest.raises(ValidationError):
        form.patched(FormPatch(consent_text=None))  # consent_required without a text


def test_rates_accept_the_limits_notation_and_unlimited() -> None:
    form = FormSettings(rate_limit_per_ip="10/minute", rate_limit_per_form="unlimited")
    assert (form.rate_limit_per_ip, form.rate_limit_per_form) == ("10/minute", "unlimited")
