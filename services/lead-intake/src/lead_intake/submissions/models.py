"""A form post as a site sends it, checked against its form and normalized (pure, no I/O);
its Idempotency-Key and the answer.

The same rules hold whatever the body's encoding: JSON, urlencoded or multipart all arrive here
as one flat mapping of field names to values.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel

from funnel_contracts import Consent, Utm
from funnel_servicekit.problems import FieldError, field_error, invalid
from lead_intake.common.normalize import normalize_email, normalize_name, normalize_phone
from lead_intake.forms.models import FieldSpec, FormSettings
from lead_intake.leads.models import Submission, SubmissionInvalid, Touchpoint

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
QUALIFICATION_FIELDS = ("budget", "authority", "need", "timing")
# The standard fields and their longest accepted value.
STANDARD_LIMITS: dict[str, int] = {
    "email": 320,
    "phone": 40,
    "first_name": 100,
    "last_name": 100,
    "landing_page": 2048,
    "referrer": 2048,
    "visitor_id": 64,
    "consent": 10,
    "locale": 35,
    "time_zone": 64,
    **dict.fromkeys(UTM_FIELDS, 255),
    **dict.fromkeys(QUALIFICATION_FIELDS, 255),
}
MAX_UNKNOWN_FIELDS = 50
MAX_UNKNOWN_LENGTH = 1000
_TRUE = {"on", "true", "1", "yes", "y"}
_FALSE = {"", "off", "false", "0", "no", "n"}
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,4}$")
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_IDEMPOTENCY_KEY = 255


class SubmissionAccepted(BaseModel):
    lead_id: str
    submission_id: str
    new_lead: bool
    message: str | None = None
    redirect_url: str | None = None


def idempotency_key(header: str | None) -> str | None:
    """The Idempotency-Key header's value; a 422 for one that is not 1 to 255 printables."""
    if header is None:
        return None
    key = header.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise invalid("Idempotency-Key", "1 to 255 printable characters", "Invalid Idempotency-Key")
    return key


# The field of a post that makes it a test lead (an admin key's post only).
TEST_FIELD = "test"


def take_test_flag(values: dict[str, object]) -> bool:
    """Whether the post asks to be a test lead (`test`: true), the field taken out of it."""
    raw = values.pop(TEST_FIELD, None)
    if raw is None or raw is False:
        return False
    if raw is True:
        return True
    try:
        return isinstance(raw, str) and _truthy(raw) == "true"
    except ValueError:
        raise invalid(TEST_FIELD, "must be true or false", "Invalid submission") from None


def is_honeypot_filled(values: Mapping[str, object], form: FormSettings) -> bool:
    """Bots fill every field; people never see the honeypot, so they leave it empty."""
    value = values.get(form.honeypot_field)
    return value is not None and str(value).strip() != ""


def parse_submission(
    values: Mapping[str, object],
    form: FormSettings,
    *,
    now: datetime,
    page_url: str | None = None,
) -> Submission:
    """Check and normalize a post; SubmissionInvalid lists every field at fault.

    `page_url` (the Referer header of a plain HTML post) is the landing page when the post
    does not name one; UTM tags missing from the fields are read from the landing page's query.
    """
    errors: list[FieldError] = []
    text: dict[str, str] = {}
    for name, raw in values.items():
        if name == form.honeypot_field:
            continue
        value = _scalar(name, raw, errors)
        if value is not None:
            text[name] = value

    def err(name: str, message: str) -> None:
        errors.append(field_error(name, message))

    specs = form.specs
    unknown = [n for n in text if n not in STANDARD_LIMITS and n not in specs]
    custom: dict[str, str] = {}
    if unknown and not form.allow_unknown_fields:
        for name in unknown:
            err(name, "unknown field")
    elif len(unknown) > MAX_UNKNOWN_FIELDS:
        err(unknown[MAX_UNKNOWN_FIELDS], f"more than {MAX_UNKNOWN_FIELDS} undeclared fields")
    else:
        for name in unknown:
            if len(text[name]) > MAX_UNKNOWN_LENGTH:
                err(name, f"longer than {MAX_UNKNOWN_LENGTH} characters")
            else:
                custom[name] = text[name]

    # Length rules (standard limits, narrowed by a declaration), then required fields.
    faulted = {e["field"] for e in errors}
    for name in [n for n in text if n not in faulted and (n in STANDARD_LIMITS or n in specs)]:
        spec = specs.get(name)
        limit = min(STANDARD_LIMITS.get(name, 10_000), spec.max_length if spec else 10_000)
        value = text[name]
        if not value.strip():
            del text[name]
        elif len(value) > limit:
            err(name, f"longer than {limit} characters")
            del text[name]
            faulted.add(name)
    for name in form.required_fields:
        if name not in text and name not in faulted:
            err(name, "required")

    def normalized(name: str, normalize: Any) -> str | None:
        if name not in text:
            return None
        try:
            result: str | None = normalize(text[name])
        except ValueError as exc:
            err(name, str(exc))
            return None
        return result

    email = normalized("email", normalize_email)
    phone = normalized("phone", lambda v: normalize_phone(v, form.default_phone_region))
    if (
        email is None
        and phone is None
        and not any(e["field"] in ("email", "phone") for e in errors)
    ):
        err("email", "required (or a phone number)")
    for name, spec in ((f.name, f) for f in form.fields):
        if name in STANDARD_LIMITS or name not in text:
            continue
        value = normalized(name, lambda v, s=spec: _typed(s, v, form.default_phone_region))
        if value is not None:
            custom[name] = value

    consent = None
    consent_given = normalized("consent", _truthy) == "true"
    if form.consent_required and not consent_given:
        err("consent", "required")
    if consent_given and form.consent_text:
        consent = Consent(
            text=form.consent_text,
            text_version=form.consent_version,
            categories=form.consent_categories,
            given_at=now,
        )
    locale = normalized("locale", _locale)
    time_zone = normalized("time_zone", _time_zone)
    visitor_id = normalized("visitor_id", _visitor_id)
    landing_page = normalized("landing_page", _url) or _safe_url(page_url)
    referrer = normalized("referrer", _url)
    if errors:
        raise SubmissionInvalid(errors)

    utm = _utm(text, landing_page)
    return Submission(
        email=email,
        phone=phone,
        first_name=normalize_name(text["first_name"]) if "first_name" in text else None,
        last_name=normalize_name(text["last_name"]) if "last_name" in text else None,
        touchpoint=Touchpoint(utm=utm, landing_page=landing_page, referrer=referrer),
        visitor_id=visitor_id,
        consent=consent,
        locale=locale,
        time_zone=time_zone,
        custom_fields=custom,
        qualification={k: text[k].strip() for k in QUALIFICATION_FIELDS if k in text},
    )


def _scalar(name: str, raw: object, errors: list[FieldError]) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str | int | float):
        return str(raw)
    if isinstance(raw, list):
        errors.append(field_error(name, "given more than once"))
    else:
        errors.append(field_error(name, "must be a single value"))
    return None


def utm_from_url(url: str | None) -> Utm:
    """The UTM tags in a URL's query (first value of each), or an empty Utm."""
    if not url:
        return Utm()
    query = parse_qs(urlsplit(url).query)
    tags = {k.removeprefix("utm_"): v[0][:255] for k, v in query.items() if k in UTM_FIELDS}
    return Utm.model_validate(tags)


def _utm(text: Mapping[str, str], landing_page: str | None) -> Utm:
    """UTM tags from the fields; any the fields lack, from the landing page's query."""
    from_page = utm_from_url(landing_page)
    return Utm(
        **{
            tag.removeprefix("utm_"): text[tag].strip()
            if tag in text
            else getattr(from_page, tag.removeprefix("utm_"))
            for tag in UTM_FIELDS
        }
    )


def _truthy(value: str) -> str:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE:
        return "false"
    raise ValueError("must be true or false")


def _url(value: str) -> str:
    if _safe_url(value) is None:
        raise ValueError("must be an http(s) URL")
    return value.strip()


def _safe_url(value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return value.strip()[:2048]


def _locale(value: str) -> str:
    if not _LOCALE.match(value.strip()):
        raise ValueError("must be a BCP 47 tag such as sv-SE")
    return value.strip()


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: str) -> str:
    if value.strip() not in _zones():
        raise ValueError("must be an IANA time zone such as Europe/Stockholm")
    return value.strip()


def _visitor_id(value: str) -> str:
    if not _VISITOR.match(value.strip()):
        raise ValueError("must be 8 to 64 letters, digits, '-' or '_'")
    return value.strip()


def _typed(spec: FieldSpec, value: str, region: str | None) -> str:
    """A custom field's value checked against its declared type."""
    value = value.strip()
    if spec.type == "email":
        return normalize_email(value)
    if spec.type == "tel":
        return normalize_phone(value, region)
    if spec.type == "number":
        try:
            float(value)
        except ValueError:
            raise ValueError("must be a number") from None
        return value
    if spec.type == "checkbox":
        return _truthy(value)
    if spec.type == "select":
        if value not in (spec.options or ()):
            raise ValueError(f"must be one of {', '.join(spec.options or ())}")
        return value
    if spec.type == "url":
        return _url(value)
    if spec.type == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a date YYYY-MM-DD") from None
        return value
    return value
