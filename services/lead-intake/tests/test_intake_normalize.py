"""Identity forms: emails, phone numbers, names, truncated IP addresses (pure)."""

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_intake.common.normalize import (
    EmailNormalizer,
    normalize_email,
    normalize_name,
    normalize_phone,
    truncate_ip,
)


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


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("070-123 45 67", "SE", "+46701234567"),
        ("+46 70 123 45 67", None, "+46701234567"),
        ("(201) 555-0123", "US", "+12015550123"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 20 7946 0018", "SE", "+442079460018"),  # an explicit country wins over the region
    ],
)
def test_phones_become_e164(raw: str, region: str | None, e164: str) -> None:
    assert normalize_phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("0701234567", None),
        ("12", "SE"),
        ("+46 70", None),
        ("call me", "US"),
        ("+1 555 0100", None),
    ],
)
def test_invalid_phones_are_refused(raw: str, region: str | None) -> None:
    with pytest.raises(ValueError, match="not a valid phone number"):
        normalize_phone(raw, region)


def test_names_are_trimmed_and_collapsed() -> None:
    assert normalize_name("  Ada   Augusta\tKing ") == "Ada Augusta King"
    assert normalize_name("   ") is None


@pytest.mark.parametrize(
    ("raw", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("testclient", None),
        (None, None),
    ],
)
def test_ip_addresses_are_kept_only_truncated(raw: str | None, truncated: str | None) -> None:
    assert truncate_ip(raw) == truncated


# --- a batch's email normalizer: the same answers as normalize_email -----------------------

_LABELS = st.sampled_from(
    ["example", "EXAMPLE", "com", "se", "co", "x", "-bad", "bad-", "a--b", "xn--bcher-kva",
     "123", "localhost", "test", "invalid", "a" * 63, "a" * 64, "sub-domain", ""]
)  # fmt: skip
_DOMAINS = st.lists(_LABELS, min_size=1, max_size=5).map(".".join) | st.text(max_size=30)
_LOCALS = st.text(alphabet="aZ09._+-!#$%&'*/=?^`{|}~\"<> @", min_size=0, max_size=70) | st.text(
    max_size=20
)


def _outcome(normalize: Callable[[str], str], raw: str) -> tuple[str, str]:
    try:
        return ("ok", normalize(raw))
    except ValueError as exc:
        return ("refused", str(exc))


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(local=_LOCALS, domain=_DOMAINS, pad=st.sampled_from(["", " ", "\t"]))
def test_the_batch_normalizer_answers_as_normalize_email(local: str, domain: str, pad: str) -> None:
    normalizer = EmailNormalizer()
    raw = f"{pad}{local}@{domain}{pad}"
    # Twice: the second answer comes from what the first remembered of the domain.
    assert _outcome(normalizer, raw) == _outcome(normalize_email, raw)
    assert _outcome(normalizer, raw) == _outcome(normalize_email, raw)
    long = f"{'x' * (250 - len(domain))}@{domain}"
    assert _outcome(normalizer, long) == _outcome(normalize_email, long)


def test_the_batch_normalizer_on_plain_and_unusual_addresses() -> None:
    normalizer = EmailNormalizer()
    for raw in [
        "Ada@Example.COM", "ada.lovelace+promo@example.com", "BJÖRN@exämple.se",
        "a@b", "a@localhost", "\"quoted\"@example.com", "Ada <ada@example.com>",
        "a..b@example.com", ".a@example.com", "a@example.com.", "a@-example.com",
        "POSTMASTER@example.com", f"{'x' * 245}@example.com", "a@@example.com", "@example.com",
    ]:  # fmt: skip
        assert _outcome(normalizer, raw) == _outcome(normalize_email, raw), raw
