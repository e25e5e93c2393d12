"""Ad-platform and webhook payloads into form values, their signatures; webhook secrets per
form; Meta lead forms routed to our forms (pure, no I/O).

Each platform's payload is read exactly as its public documentation shows it, then turned
into the same flat mapping a form post gives, so the form's rules apply unchanged.

A form's own webhook secret wins over the service-wide one. Rotating keeps the previous secret
valid for a grace period, so the sender (Typeform, a partner) can be switched over while its
deliveries keep arriving. The API shows a secret in full only once, when it generates it.

One Meta Page runs many lead forms, each with its own questions. A mapping routes a Meta
form's leads to one of our forms (and so its funnel) and names its questions in our fields;
a Meta form without one joins the service-wide form (`FUNNEL_META_FORM_ID`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lead_intake.common.text_rules import StorableText
from lead_intake.forms.models import ID_PATTERN, check_field_map
from lead_intake.submissions.models import UTM_FIELDS

META = "meta-lead-ads"
TYPEFORM = "typeform"
GOOGLE_ADS = "google-ads"
GENERIC = "webhook"
T = TypeVar("T")

# What each platform calls the standard fields, unless the form's field_map says otherwise.
META_FIELDS = {
    "email": "email",
    "phone_number": "phone",
    "first_name": "first_name",
    "last_name": "last_name",
    "full_name": "full_name",
}
GOOGLE_COLUMNS = {
    "EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "FULL_NAME": "full_name",
}


class SignatureInvalid(ValueError):
    """The payload is not signed with the shared secret."""


class PayloadInvalid(ValueError):
    """The payload does not have the platform's documented shape."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def verify_hex_signature(
    secret: str, body: bytes, header: str | None, prefix: str = "sha256="
) -> None:
    """`sha256=<hex HMAC-SHA256 of the raw body>` (Meta's X-Hub-Signature-256, generic)."""
    expected = prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not header or not hmac.compare_digest(expected, header.strip()):
        raise SignatureInvalid("signature does not match")


SIGNATURE_TOLERANCE_SECONDS = 300


class SignatureExpired(SignatureInvalid):
    """Signed too long ago (or too far ahead): a captured request is not valid forever."""


@dataclass(frozen=True)
class TimedSignature:
    """`X-Funnel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (one or more v1,
    so a sender may sign with both secrets while one is rotated)."""

    timestamp: int
    digests: tuple[str, ...]

    @classmethod
    def parse(cls, header: str | None) -> TimedSignature | None:
        """None when the header is not of this shape (absent, or the body-only form)."""
        if not header or not header.strip().startswith("t="):
            return None
        timestamp: int | None = None
        digests: list[str] = []
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key == "t" and value.isdigit() and len(value) <= 12:
                timestamp = int(value)
            elif key == "v1" and value:
                digests.append(value.lower())
        if timestamp is None or not digests:
            return None
        return cls(timestamp, tuple(digests[:4]))

    def verify(self, secret: str, body: bytes, *, now: float, tolerance: float) -> str:
        """The matching digest (what a replay would reuse); raises SignatureInvalid."""
        signed = str(self.timestamp).encode() + b"." + body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for digest in self.digests:
            if hmac.compare_digest(expected, digest):
                if abs(now - self.timestamp) > tolerance:
                    raise SignatureExpired("signed outside the tolerance")
                return digest
        raise SignatureInvalid("signature does not match")


def timed_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender puts in X-Funnel-Signature (for documentation and tests)."""
    signed = str(timestamp).encode() + b"." + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def verify_typeform_signature(secret: str, body: bytes, header: str | None) -> None:
    """`sha256=<base64 HMAC-SHA256 of the raw body>` (Typeform-Signature)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    expected = "sha256=" + base64.b64encode(digest).decode()
    if not header or not hmac.compare_digest(expected, header.strip()):
        raise SignatureInvalid("signature does not match")


def verify_shared_key(expected: str, given: object) -> None:
    if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureInvalid("key does not match")


@dataclass(frozen=True)
class PlatformLead:
    """A lead as a platform delivered it: its id there and the form values it maps to."""

    external_id: str
    values: dict[str, object]
    # The platform's own test lead (Google's `is_test`): stored as a test lead.
    test: bool = False
    # The ad that brought the lead, as the platform names it: `utm_source` (meta, google),
    # the campaign (`utm_campaign`) and the platform's ids (campaign, ad group or ad set, ad).
    source: str | None = None
    ad_ids: dict[str, str] = field(default_factory=dict)

    @property
    def campaign(self) -> str | None:
        return self.ad_ids.get("campaign_id")


def _finish(mapped: dict[str, object]) -> dict[str, object]:
    """A full name becomes first and last name when those are not given separately."""
    full = mapped.pop("full_name", None)
    if isinstance(full, str) and full.strip():
        first, _, last = full.strip().partition(" ")
        mapped.setdefault("first_name", first)
        if last.strip():
            mapped.setdefault("last_name", last.strip())
    return mapped


def _map(
    name: str,
    value: object,
    field_map: Mapping[str, str],
    defaults: Mapping[str, str],
    out: dict[str, object],
) -> None:
    target = field_map.get(name) or defaults.get(name)
    if target is not None and value is not None and target not in out:
        out[target] = value


def _list(value: object, field: str) -> list[Any]:
    """A list the payload must hold at `field` (missing or null: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadInvalid(field, "must be a list")
    return value


# -- Meta Lead Ads -------------------------------------------------------------------------


def meta_lead_ids(payload: Any) -> list[tuple[str, dict[str, Any]]]:
    """(leadgen_id, the change's value) of each `leadgen` change in a Page webhook."""
    if not isinstance(payload, dict) or payload.get("object") != "page":
        raise PayloadInvalid("object", "must be 'page'")
    found: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(_list(payload.get("entry"), "entry")):
        if not isinstance(entry, dict):
            raise PayloadInvalid(f"entry.{i}", "must be an object")
        for j, change in enumerate(_list(entry.get("changes"), f"entry.{i}.changes")):
            if not isinstance(change, dict) or change.get("field") != "leadgen":
                continue
            value = change.get("value")
            lead_id = value.get("leadgen_id") if isinstance(value, dict) else None
            if not isinstance(value, dict) or not isinstance(lead_id, str | int):
                raise PayloadInvalid(f"entry.{i}.changes.{j}.value.leadgen_id", "missing")
            found.append((str(lead_id), value))
    return found


def meta_values(lead: Any, field_map: Mapping[str, str]) -> dict[str, object]:
    """A Graph API lead (`{"id", "created_time", "field_data": [{"name", "values"}]}`)."""
    if not isinstance(lead, dict) or not isinstance(lead.get("field_data"), list):
        raise PayloadInvalid("field_data", "missing")
    out: dict[str, object] = {}
    for item in lead["field_data"]:
        if not isinstance(item, dict):
            continue
        values = item.get("values")
        first = values[0] if isinstance(values, list) and values else None
        _map(str(item.get("name")), first, field_map, META_FIELDS, out)
    return _finish(out)


# -- Typeform --------------------------------------------------------------------------------


def _typeform_answer(answer: dict[str, Any]) -> object:
    kind = answer.get("type")
    value = answer.get(kind) if isinstance(kind, str) else None
    if kind == "choice" and isinstance(value, dict):
        return value.get("label") or value.get("other")
    if kind == "choices" and isinstance(value, dict):
        labels = value.get("labels")
        return (
            ", ".join(x for x in labels if isinstance(x, str)) if isinstance(labels, list) else None
        )
    if isinstance(value, str | int | float | bool):
        return value
    return None


def typeform_lead(payload: Any, field_map: Mapping[str, str]) -> PlatformLead:
    """A `form_response` webhook: answers by field ref, hidden fields (UTM) by name."""
    response = payload.get("form_response") if isinstance(payload, dict) else None
    if not isinstance(response, dict) or payload.get("event_type") != "form_response":
        raise PayloadInvalid("form_response", "missing (event_type must be form_response)")
    token = response.get("token")
    if not isinstance(token, str) or not token:
        raise PayloadInvalid("form_response.token", "missing")
    out: dict[str, object] = {}
    by_type = {"email": "email", "phone_number": "phone"}
    for answer in _list(response.get("answers"), "form_response.answers"):
        if not isinstance(answer, dict):
            continue
        field = answer.get("field")
        ref = str(field.get("ref", "")) if isinstance(field, dict) else ""
        value = _typeform_answer(answer)
        if ref in field_map:
            _map(ref, value, field_map, {}, out)
        elif isinstance(answer.get("type"), str) and answer["type"] in by_type:
            _map(str(answer["type"]), value, {}, by_type, out)
    hidden = response.get("hidden") or {}
    if isinstance(hidden, dict):
        for name, value in hidden.items():
            if name in UTM_FIELDS or name in field_map:
                _map(name, value, field_map, {name: name}, out)
    return PlatformLead(token, _finish(out))


# -- Google Ads lead form extensions -------------------------------------------------------


def google_ads_lead(payload: Any, field_map: Mapping[str, str]) -> tuple[PlatformLead, object]:
    """The lead form webhook: `user_column_data` by column_id; returns the lead and google_key."""
    if not isinstance(payload, dict):
        raise PayloadInvalid("body", "must be a JSON object")
    lead_id = payload.get("lead_id")
    if not isinstance(lead_id, str) or not lead_id:
        raise PayloadInvalid("lead_id", "missing")
    columns = payload.get("user_column_data")
    if not isinstance(columns, list):
        raise PayloadInvalid("user_column_data", "missing")
    out: dict[str, object] = {}
    for column in columns:
        if isinstance(column, dict):
            name = str(column.get("column_id") or column.get("column_name") or "")
            _map(name, column.get("string_value"), field_map, GOOGLE_COLUMNS, out)
    test = payload.get("is_test") is True
    ids = _ids(payload, GOOGLE_AD_IDS)
    lead = PlatformLead(lead_id, _finish(out), test, "google" if ids else None, ids)
    return lead, payload.get("google_key")


# The ids of the ad a lead came from, as each platform names them in its payload.
GOOGLE_AD_IDS = ("campaign_id", "adgroup_id", "creative_id", "gcl_id")
META_AD_IDS = ("campaign_id", "adset_id", "ad_id", "form_id")


def _ids(payload: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    """The platform's ids present in the payload, as text (ids are numbers in some)."""
    return {
        n: str(payload[n])
        for n in names
        if isinstance(payload.get(n), str | int) and str(payload[n]).strip()
    }


def meta_ad_ids(lead: Any) -> dict[str, str]:
    """A Graph API lead's ad, ad set and campaign ids (fetched with the lead's fields)."""
    return _ids(lead, META_AD_IDS) if isinstance(lead, dict) else {}


# -- A generic HMAC-signed JSON webhook ----------------------------------------------------


def _path(payload: Any, dotted: str) -> object:
    node = payload
    for part in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, str | int | float | bool) else None


def generic_lead(payload: Any, field_map: Mapping[str, str], id_path: str = "id") -> PlatformLead:
    """Any JSON object: each mapped dotted path gives one field; `id` names the delivery."""
    if not isinstance(payload, dict):
        raise PayloadInvalid("body", "must be a JSON object")
    if not field_map:
        raise PayloadInvalid("field_map", "the form maps no webhook fields")
    external = _path(payload, id_path)
    if external is None:
        raise PayloadInvalid(id_path, "missing")
    out: dict[str, object] = {}
    for source in field_map:
        _map(source, _path(payload, source), field_map, {}, out)
    return PlatformLead(str(external), _finish(out))


# -- Webhook secrets per form ---------------------------------------------------------------

# The webhook paths' last segment: /v1/forms/{form_id}/webhooks/{platform}.
SecretPlatform = Literal["typeform", "generic", "google-ads"]
DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_GRACE_SECONDS = 30 * 24 * 3600


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def hint(secret: str) -> str:
    """Enough to tell two secrets apart, never enough to sign with."""
    return f"…{secret[-4:]}"


@dataclass(frozen=True)
class FormSecret:
    """A form's secret for one platform, and the one it replaced while that stays valid."""

    platform: str
    secret: str
    rotated_at: datetime
    previous_secret: str | None = None
    previous_valid_until: datetime | None = None

    def valid(self, now: datetime) -> list[str]:
        """The secrets a delivery may be signed with at `now`, the current one first."""
        previous_valid = self.previous_valid_until is not None and now < self.previous_valid_until
        if self.previous_secret is not None and previous_valid:
            return [self.secret, self.previous_secret]
        return [self.secret]


def verify_any(candidates: list[str], check: Callable[[str], object]) -> None:
    """Passes when `check` (which raises SignatureInvalid) passes for one of the secrets."""
    verified_by(candidates, check)


def verified_by(candidates: list[str], check: Callable[[str], T]) -> T:
    """What `check` returns for the first secret it passes with; SignatureExpired when the
    signature matched but is too old, SignatureInvalid when it matched none."""
    expired: SignatureExpired | None = None
    for candidate in candidates:
        try:
            return check(candidate)
        except SignatureExpired as exc:
            expired = exc
        except SignatureInvalid:
            continue
    if expired is not None:
        raise expired
    raise SignatureInvalid("signed with none of the valid secrets")


def google_key_of(raw: bytes) -> object:
    """The `google_key` of a Google Ads delivery, read before anything else of it (the key is
    checked before the form is looked up or the payload judged); None when there is none."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return payload.get("google_key") if isinstance(payload, dict) else None


class SecretIn(BaseModel):
    """Set or rotate a form's webhook secret."""

    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="The secret the sender signs with; left out, one is generated and "
        "returned once.",
    )
    previous_valid_seconds: int = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the secret it replaces is still accepted (0: not at all).",
    )


class SecretOut(BaseModel):
    """A form's webhook secret as the API shows it: a hint, never the secret itself."""

    platform: SecretPlatform
    hint: str
    rotated_at: datetime
    previous_hint: str | None = None
    previous_valid_until: datetime | None = None
    secret: str | None = Field(
        default=None, description="Only in the answer that generated it: keep it now."
    )

    @classmethod
    def of(cls, stored: FormSecret, *, now: datetime, generated: bool = False) -> SecretOut:
        previous = len(stored.valid(now)) > 1
        return cls.model_validate(
            {
                "platform": stored.platform,
                "hint": hint(stored.secret),
                "rotated_at": stored.rotated_at,
                "previous_hint": hint(stored.previous_secret)
                if previous and stored.previous_secret
                else None,
                "previous_valid_until": stored.previous_valid_until if previous else None,
                "secret": stored.secret if generated else None,
            }
        )


# -- Meta lead forms -----------------------------------------------------------------------

META_FORM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class MetaFormIn(StorableText):
    """Where a Meta lead form's leads go."""

    model_config = ConfigDict(extra="forbid")

    form_id: str = Field(pattern=ID_PATTERN, description="Our form (and so funnel) they join.")
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="A Meta question's name (field_data[].name) -> our field name; these win "
        "over the form's own field_map.",
    )

    @field_validator("field_map")
    @classmethod
    def _mapping(cls, value: dict[str, str]) -> dict[str, str]:
        return check_field_map(value)


class MetaForm(MetaFormIn):
    meta_form_id: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


def meta_form_id(notice: Mapping[str, Any]) -> str | None:
    """The Meta form a `leadgen` change names (`value.form_id`), if it names one."""
    value = notice.get("form_id")
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def field_map_for(form_map: Mapping[str, str], mapping: MetaForm | None) -> dict[str, str]:
    """The Meta form's own names first, then the form's."""
    return {**form_map, **(mapping.field_map if mapping is not None else {})}


# -- Answers ---------------------------------------------------------------------------------


class WebhookAccepted(BaseModel):
    lead_id: str | None = None
    new_lead: bool = False
    received: int = 1


class SecretList(BaseModel):
    secrets: list[SecretOut]


class MetaFormList(BaseModel):
    meta_forms: list[MetaForm]
    next_after: str | None = None
