"""Sealed personal data: opens only with its lead's key, for its lead and its event type."""

import json
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from funnel_contracts import LeadCapturedV2, Sealed, parse_event
from funnel_contracts.sealed import (
    KEY_BYTES,
    PersonalData,
    SealError,
    key_from_text,
    key_to_text,
    new_data_key,
    seal,
    unseal,
)

CAPTURED = "funnel.lead.captured.v2"
UPDATED = "funnel.lead.updated.v2"
ADA = PersonalData(
    email="ada@example.com",
    phone="+46701234567",
    first_name="Ada",
    last_name="Lovelace",
    custom_fields={"company": "Analytical Engines"},
)
GOLDEN = Path(__file__).parent / "golden"


def _flip(text: str, at: int) -> str:
    """The same base64url text with one character changed at `at`."""
    swapped = "A" if text[at] != "A" else "B"
    return text[:at] + swapped + text[at + 1 :]


def test_a_sealed_document_round_trips_and_hides_every_value() -> None:
    key, lead = new_data_key(), uuid4()
    sealed = seal(ADA, key=key, lead_id=lead, event_type=CAPTURED)
    wire = sealed.model_dump_json()
    for value in ("ada@example.com", "+46701234567", "Ada", "Lovelace", "Analytical"):
        assert value not in wire
    assert unseal(sealed, key=key, lead_id=lead, event_type=CAPTURED) == ADA


def test_each_seal_uses_a_fresh_nonce() -> None:
    key, lead = new_data_key(), uuid4()
    first = seal(ADA, key=key, lead_id=lead, event_type=CAPTURED)
    second = seal(ADA, key=key, lead_id=lead, event_type=CAPTURED)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_a_tampered_ciphertext_is_refused() -> None:
    key, lead = new_data_key(), uuid4()
    sealed = seal(ADA, key=key, lead_id=lead, event_type=CAPTURED)
    for at in (0, len(sealed.ciphertext) // 2, len(sealed.ciphertext) - 2):
        broken = Sealed(alg="A256GCM", nonce=sealed.nonce, ciphertext=_flip(sealed.ciphertext, at))
        with pytest.raises(SealError):
            unseal(broken, key=key, lead_id=lead, event_type=CAPTURED)


def test_a_tampered_nonce_is_refused() -> None:
    key, lead = new_data_key(), uuid4()
    sealed = seal(ADA, key=key, lead_id=lead, event_type=CAPTURED)
    broken = Sealed(alg="A256GCM", nonce=_flip(sealed.nonce, 3), ciphertext=sealed.ciphertext)
    with pytest.raises(SealError):
        unseal(broken, key=key, lead_id=lead, event_type=CAPTURED)


def test_a_blob_moved_to_another_lead_is_refused() -> None:
    key = new_data_key()
    sealed = seal(ADA, key=key, lead_id=uuid4(), event_type=CAPTURED)
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, key=key, lead_id=uuid4(), event_type=CAPTURED)


def test_a_blob_moved_to_another_event_type_is_refused() -> None:
    key, lead = new_data_key(), uuid4()
    sealed = seal(ADA, key=key, lead_id=lead, event_type=CAPTURED)
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, key=key, lead_id=lead, event_type=UPDATED)


def test_the_wrong_key_is_refused() -> None:
    lead = uuid4()
    sealed = seal(ADA, key=new_data_key(), lead_id=lead, event_type=CAPTURED)
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, key=new_data_key(), lead_id=lead, event_type=CAPTURED)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_a_key_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(SealError, match="32 bytes"):
        seal(ADA, key=b"k" * size, lead_id=uuid4(), event_type=CAPTURED)


def test_keys_travel_as_base64url_and_bad_text_is_refused() -> None:
    key = new_data_key()
    assert len(key) == KEY_BYTES
    assert key_from_text(key_to_text(key)) == key
    with pytest.raises(SealError):
        key_from_text(key_to_text(key)[:-4])
    with pytest.raises(SealError):
        key_from_text("not base64 at all!")


def test_the_published_golden_example_still_opens_with_its_key() -> None:
    # The golden v2 event was sealed with bytes(range(32)): a change of the format breaks it.
    golden = json.loads((GOLDEN / f"{CAPTURED}.json").read_text())
    event = parse_event(CAPTURED, golden)
    assert isinstance(event, LeadCapturedV2)
    opened = unseal(
        event.personal_data, key=bytes(range(32)), lead_id=UUID(golden["lead_id"]),
        event_type=CAPTURED,
    )  # fmt: skip
    assert opened.email == "ada@example.com"
    assert opened.phone == "+46701234567"
    assert "ada@example.com" not in json.dumps(golden)
