"""One imported row, as the capture takes it (pure): normalized, or every field at fault.

A bad row never stops the others: its errors are kept with its row number and the import goes
on. Text is trimmed; an empty cell is a field not given (it never blanks a known value).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from funnel_contracts import Consent, Utm
from lead_intake.common.normalize import normalize_email, normalize_name, normalize_phone
from lead_intake.common.text_rules import nul_path
from lead_intake.imports.models.mapping import CUSTOM, QUALIFICATION, QUALIFICATION_FIELDS
from lead_intake.leads.models import Submission, Touchpoint
from lead_intake.submissions.models import _locale, _time_zone, _truthy

MAX_CUSTOM_FIELDS = 50
MAX_VALUE = 1000
MAX_ANSWER = 255
MAX_CATEGORY = 64
# A capture time a little ahead of this clock is another clock's skew, not the future.
CLOCK_SKEW = timedelta(minutes=5)
IMPORTED_CONSENT_TEXT = "Consent recorded by the tool these contacts were imported from."
_LIMITS = {
    "email": 320,
    "phone": 40,
    "first_name": 100,
    "last_name": 100,
    "original_source": 100,
    "landing_page": 2048,
    "consent_text": 4000,
    "stage": 100,
    **dict.fromkeys(("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"), 255),
}
_EPOCH_MS = re.compile(r"^\d{12,14}$")


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str

    def as_json(self) -> dict[str, object]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class ImportRow:
    """A valid row: the person as a submission, when they were captured, their stage."""

    row: int
    submission: Submission
    captured_at: datetime
    stage: str | None = None
    entered_at: datetime | None = None


@dataclass(frozen=True)
class FormRules:
    """What of the form a row is checked against: its phone region, its consent text, the
    stages of its funnel (None: not known here, the tracker ignores a stage it lacks)."""

    phone_region: str | None
    consent_text: str | None
    consent_version: str | None
    consent_categories: tuple[str, ...]
    stages: tuple[str, ...] | None


@dataclass
class _Errors:
    row: int
    found: list[RowError] = field(default_factory=list)

    def add(self, name: str, message: str) -> None:
        self.found.append(RowError(self.row, name, message))


def parse_time(value: str) -> datetime:
    """ISO 8601 (a time without an offset is UTC), a date (midnight UTC), or epoch millis
    (HubSpot's API exports)."""
    text = value.strip()
    if _EPOCH_MS.match(text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
    except ValueError:
        raise ValueError("must be a time such as 2024-03-05T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_row(
    number: int,
    values: Mapping[str, str],
    rules: FormRules,
    *,
    now: datetime,
    default_time: datetime | None = None,
    email_of: Callable[[str], str] = normalize_email,
) -> ImportRow | list[RowError]:
    """The row as a capture takes it, or every field at fault (with the row's number).
    A row without `captured_at` was captured at `default_time` (the import's own time).
    `email_of` normalizes the email (a batch's EmailNormalizer: the same answers)."""
    errors = _Errors(number)
    if "_shape" in values:
        errors.add("row", values["_shape"])
        return errors.found
    text: dict[str, str] = {}
    for name, raw in values.items():
        value = raw.strip() if isinstance(raw, str) else ""
        if not value:
            continue
        if nul_path(value) is not None:
            errors.add(name, "must not contain NUL or unpaired surrogate characters")
            continue
        limit = _LIMITS.get(name, MAX_ANSWER if _is_answer(name) else MAX_VALUE)
        if len(value) > limit:
            errors.add(name, f"longer than {limit} characters")
            continue
        text[name] = value

    def normalized(name: str, normalize: object) -> str | None:
        if name not in text:
            return None
        try:
            return normalize(text[name])  # type: ignore[operator, no-any-return]
        except ValueError as exc:
            errors.add(name, str(exc))
            return None

    email = normalized("email", email_of)
    phone = normalized("phone", lambda v: normalize_phone(v, rules.phone_region))
    if email is None and phone is None and not errors.found:
        errors.add("email", "an email or a phone is required")
    given_at = _time(text, "captured_at", errors, now)
    captured_at = given_at or default_time or now
    entered_at = _time(text, "entered_at", errors, now)
    stage = text.get("stage")
    if stage is not None and rules.stages is not None and stage not in rules.stages:
        errors.add("stage", f"not a stage of the form's funnel ({', '.join(rules.stages)})")
    if entered_at is not None and stage is None:
        errors.add("entered_at", "given without a stage")
    captured_ok = given_at is not None or "captured_at" not in text
    if entered_at is not None and captured_ok and entered_at < captured_at:
        errors.add("entered_at", "before captured_at")
    consent = _consent(text, rules, errors, captured_at, now)
    custom = {k.removeprefix(CUSTOM): v for k, v in text.items() if k.startswith(CUSTOM)}
    if "original_source" in text:
        custom["original_source"] = text["original_source"]
    if len(custom) > MAX_CUSTOM_FIELDS:
        errors.add("custom", f"more than {MAX_CUSTOM_FIELDS} custom fields")
    locale = normalized("locale", lambda v: _locale(v.replace("_", "-")))  # Mautic: en_US
    time_zone = normalized("time_zone", _time_zone)
    landing_page = text.get("landing_page")
    if landing_page is not None and not landing_page.startswith(("http://", "https://")):
        errors.add("landing_page", "must be an http(s) URL")
    if errors.found:
        return errors.found
    return ImportRow(
        number,
        Submission(
            email=email,
            phone=phone,
            first_name=normalize_name(text["first_name"]) if "first_name" in text else None,
            last_name=normalize_name(text["last_name"]) if "last_name" in text else None,
            touchpoint=Touchpoint(
                utm=Utm(**{k.removeprefix("utm_"): v for k, v in text.items() if k[:4] == "utm_"}),
                landing_page=landing_page,
            ),
            consent=consent,
            locale=locale,
            time_zone=time_zone,
            custom_fields=custom,
            qualification={
                k.removeprefix(QUALIFICATION): v for k, v in text.items() if _is_answer(k)
            },
        ),
        captured_at,
        stage,
        entered_at if stage is not None else None,
    )


def _is_answer(name: str) -> bool:
    return name in QUALIFICATION_FIELDS or name.startswith(QUALIFICATION)


def _time(text: Mapping[str, str], name: str, errors: _Errors, now: datetime) -> datetime | None:
    if name not in text:
        return None
    try:
        at = parse_time(text[name])
    except (ValueError, OverflowError, OSError) as exc:
        errors.add(name, str(exc) if isinstance(exc, ValueError) else "not a time")
        return None
    if at > now + CLOCK_SKEW:
        errors.add(name, "in the future")
        return None
    return at


def _consent(
    text: Mapping[str, str], rules: FormRules, errors: _Errors, captured_at: datetime, now: datetime
) -> Consent | None:
    if "consent" not in text:
        if "consent_at" in text or "consent_categories" in text:
            errors.add("consent", "required with consent_at or consent_categories")
        return None
    try:
        given = _truthy(text["consent"]) == "true"
    except ValueError as exc:
        errors.add("consent", str(exc))
        return None
    if not given:
        return None
    given_at = _time(text, "consent_at", errors, now) or captured_at
    categories = tuple(
        c.strip() for c in re.split(r"[,;|]", text.get("consent_categories", "")) if c.strip()
    )
    if any(len(c) > MAX_CATEGORY for c in categories):
        errors.add("consent_categories", f"a category is longer than {MAX_CATEGORY} characters")
        return None
    return Consent(
        text=text.get("consent_text") or rules.consent_text or IMPORTED_CONSENT_TEXT,
        text_version=rules.consent_version if "consent_text" not in text else None,
        categories=categories or rules.consent_categories,
        given_at=given_at,
    )
