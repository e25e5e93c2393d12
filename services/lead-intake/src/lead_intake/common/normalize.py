"""The identity forms of what people type: emails, phone numbers, names, IP addresses (pure)."""

from __future__ import annotations

import ipaddress
import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, EMAIL_MAX_LENGTH


def normalize_email(raw: str) -> str:
    """The identity form of an email: syntax-checked, trimmed, lower-cased."""
    try:
        valid = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    return valid.normalized.lower()


# A host name of ASCII letters, digits, hyphens and dots: what nearly every address has.
_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.-]+\Z")


class EmailNormalizer:
    """`normalize_email` for many addresses (an import's batch), with the same answers: a plain
    address (ASCII, one @, a dot-atom local part, a host name of letters, digits, hyphens and
    dots) has its local part checked by the validator's own dot-atom rule and its domain by
    the validator itself, once per domain; the total length as the validator counts it. Any
    other address, and any refused one, goes through `normalize_email` whole (its message)."""

    def __init__(self) -> None:
        self._domains: dict[str, str | None] = {}

    def __call__(self, raw: str) -> str:
        text = raw.strip()
        local, at, domain = text.partition("@")
        if not (
            at and text.isascii() and DOT_ATOM_TEXT.match(local) and _PLAIN_DOMAIN.match(domain)
        ):
            return normalize_email(raw)
        if domain not in self._domains:
            try:
                checked = validate_email(f"a@{domain}", check_deliverability=False).domain
            except EmailNotValidError:
                checked = None
            self._domains[domain] = checked
        normal = self._domains[domain]
        if normal is None or len(local) + 1 + max(len(domain), len(normal)) > EMAIL_MAX_LENGTH:
            return normalize_email(raw)
        return f"{local}@{normal}".lower()


def normalize_phone(raw: str, default_region: str | None) -> str:
    """E.164 (`+46701234567`); a number without `+country` is read in `default_region`."""
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if default_region else " (write it with +country code)"
        raise ValueError(f"not a valid phone number{hint}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_name(raw: str) -> str | None:
    """Trimmed, inner runs of whitespace collapsed; None when nothing is left."""
    name = " ".join(raw.split())
    return name or None


def truncate_ip(raw: str | None) -> str | None:
    """The network, never the host: IPv4 to /24, IPv6 to /48 (None when not an address)."""
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
