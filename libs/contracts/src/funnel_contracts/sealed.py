"""Personal data sealed with the person's own key (crypto-shredding), the one format for all.

Lead events never carry a person's contact details in the clear: lead-intake seals them as
one JSON document with AES-256-GCM under a 256-bit key of that person alone, and deletes the
key on erasure, after which every copy on every topic (and every backup of one) is noise.
The associated data binds a sealed blob to its lead and event type, so a blob copied into
another lead's event, or into another kind of event, does not open.

Pure: no I/O. The key is handed in by the caller (intake's `subject_keys`, or its key API).
"""

from __future__ import annotations

import base64
import binascii
import os
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from funnel_contracts.events.lead import Sealed

KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed blob that does not open: tampered with, for another lead or event, wrong key."""


class PersonalData(BaseModel):
    """What is sealed: everything that names or reaches the person."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    email: str | None = None
    phone: str | None = Field(default=None, description="E.164.")
    first_name: str | None = None
    last_name: str | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)
    # What can name a person beside their contact details: the pages' full addresses (query
    # strings carry emails, names and click ids), the visitor id, the consent text they saw.
    # The events carry only the pages' host and path in the clear (`page_address`).
    landing_page: str | None = None
    referrer: str | None = None
    visitor_id: str | None = None
    consent_text: str | None = None
    # What a person answered and what an activity said about them, whole (decision 0054): the
    # clear copies keep only choices (`funnel_contracts.events.base.clear_answers`,
    # `clear_properties`). An activity event seals `properties` and `page_url` alone.
    qualification: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    page_url: str | None = None


def new_data_key() -> bytes:
    """A fresh random 256-bit data key for one person."""
    return os.urandom(KEY_BYTES)


def associated_data(lead_id: UUID, event_type: str) -> bytes:
    """What a blob is bound to: it opens only in an event of this type about this lead."""
    return f"funnel-pii:{lead_id}:{event_type}".encode()


def seal(data: PersonalData, *, key: bytes, lead_id: UUID, event_type: str) -> Sealed:
    """Encrypt `data` for one lead's events of one type."""
    _check_key(key)
    nonce = os.urandom(NONCE_BYTES)
    plain = data.model_dump_json(exclude_none=True).encode()
    cipher = AESGCM(key).encrypt(nonce, plain, associated_data(lead_id, event_type))
    return Sealed(alg="A256GCM", nonce=_b64(nonce), ciphertext=_b64(cipher))


def unseal(sealed: Sealed, *, key: bytes, lead_id: UUID, event_type: str) -> PersonalData:
    """Decrypt and authenticate; SealError when anything does not match."""
    _check_key(key)
    try:
        nonce, cipher = _unb64(sealed.nonce), _unb64(sealed.ciphertext)
    except (binascii.Error, ValueError) as exc:
        raise SealError("sealed data is not base64url") from exc
    if len(nonce) != NONCE_BYTES:
        raise SealError("nonce is not 96 bits")
    try:
        plain = AESGCM(key).decrypt(nonce, cipher, associated_data(lead_id, event_type))
    except InvalidTag:
        raise SealError("sealed data does not open with this key, lead and event type") from None
    try:
        return PersonalData.model_validate_json(plain)
    except ValidationError:
        # Authentic but not our document: a producer bug, and the content must not be echoed.
        raise SealError("sealed data is not a personal-data document") from None


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise SealError(f"a data key has {KEY_BYTES} bytes")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_to_text(key: bytes) -> str:
    """A data key as it travels in the key API (base64url, unpadded)."""
    return _b64(key)


def key_from_text(text: str) -> bytes:
    """The inverse of `key_to_text`; SealError for anything that is not a data key."""
    try:
        key = _unb64(text)
    except (binascii.Error, ValueError) as exc:
        raise SealError("a data key is base64url") from exc
    _check_key(key)
    return key
