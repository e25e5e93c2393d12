"""A form as the registry holds it: where it posts from, its fields, consent, what follows;
and the CORS answer a form gives a browser.

Pure: pydantic models and their rules, no I/O. The store keeps `FormSettings` as one JSON
document beside the form's id, funnel, name and public key.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

import phonenumbers
from fastapi import Path
from limits import parse as parse_limit
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from funnel_servicekit.problems import Problem, field_problem
from lead_intake.common.text_rules import StorableText

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
FIELD_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
UNLIMITED = "unlimited"
FormId = Annotated[str, Path(pattern=ID_PATTERN, description="The form's id.")]
ALLOWED_HEADERS = "Content-Type, Accept, Idempotency-Key, X-Funnel-Key"
EXPOSED_HEADERS = "Retry-After, Idempotent-Replayed"

FieldType = Literal[
    "text", "textarea", "email", "tel", "number", "checkbox", "select", "url", "date", "hidden"
]


class FieldSpec(BaseModel):
    """One field of a form: a standard one (email, phone, names) or a custom one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=FIELD_NAME_PATTERN)
    type: FieldType = "text"
    required: bool = False
    max_length: int = Field(default=255, ge=1, le=10_000)
    label: str | None = Field(default=None, max_length=200)
    options: tuple[str, ...] | None = Field(
        default=None, description="The allowed values of a select field."
    )

    @model_validator(mode="after")
    def _select_has_options(self) -> FieldSpec:
        if self.type == "select" and not self.options:
            raise ValueError("a select field needs options")
        return self


def _origin(value: str) -> str:
    """`https://shop.example.com[:port]`, lower-cased; `*` allows any origin."""
    if value == "*":
        return value
    parts = urlsplit(value.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"{value!r} is not an origin like https://shop.example.com")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{value!r} is not an origin like https://shop.example.com")
    return f"{parts.scheme}://{parts.netloc}"


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


def _rate(value: str | None) -> str | None:
    if value is None or value == UNLIMITED:
        return value
    try:
        parse_limit(value)
    except ValueError as exc:
        raise ValueError(f"{value!r}: use e.g. '20/minute', '5/second' or 'unlimited'") from exc
    return value


def check_field_map(value: dict[str, str]) -> dict[str, str]:
    """A webhook's field names (up to 200 characters) -> a form's field names."""
    if len(value) > 200:
        raise ValueError("at most 200 mapped fields")
    for source, target in value.items():
        if not source or len(source) > 200 or not re.match(FIELD_NAME_PATTERN, target):
            raise ValueError(f"{source[:50]!r} -> {target[:50]!r}: map to a field name")
    return value


class FormSettings(StorableText):
    """Everything about a form beyond its id, funnel and name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_url: str | None = Field(default=None, max_length=2048, description="The site's home.")
    allowed_origins: tuple[str, ...] = Field(
        default=(),
        description="Origins whose pages may post from a browser; '*' for any. "
        "Posts without an Origin header (servers) are not affected.",
    )
    fields: tuple[FieldSpec, ...] = Field(
        default=(), description="Declared fields; email is required unless declared otherwise."
    )
    allow_unknown_fields: bool = Field(
        default=False, description="Keep undeclared fields as custom fields instead of a 422."
    )
    consent_text: str | None = Field(default=None, max_length=4000)
    consent_version: str | None = Field(default=None, max_length=100)
    consent_categories: tuple[str, ...] = ()
    consent_required: bool = False
    attribution_days: int = Field(
        default=30,
        ge=0,
        le=395,
        description="How long embed.js keeps a visitor's first touch (the UTM tags of their "
        "first tagged visit) in the site's own storage; 0: never across visits. Kept only "
        "with consent when the form requires it.",
    )
    default_phone_region: str | None = Field(
        default=None, description="ISO 3166 region for numbers written without +country."
    )
    thank_you_url: str | None = Field(default=None, max_length=2048)
    thank_you_message: str = Field(default="Thank you! We will be in touch.", max_length=2000)
    honeypot_field: str = Field(default="website", pattern=FIELD_NAME_PATTERN)
    rate_limit_per_ip: str | None = Field(
        default=None, description="e.g. '10/minute'; null: the service default; 'unlimited'."
    )
    rate_limit_per_form: str | None = None
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="Webhook field (Typeform ref, Google column_id, Meta field name, or a "
        "dotted path in a generic webhook's JSON) -> this form's field name.",
    )
    accept_body_only_signature: bool = Field(
        default=False,
        description="The generic webhook also takes the old `X-Funnel-Signature: sha256=<hex "
        "HMAC of the body>`, which a captured request can replay forever; off for new forms "
        "(forms made before the timestamped signature keep it on until switched off).",
    )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(_origin(str(o)) for o in value)
        return value

    @field_validator("site_url", "thank_you_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("rate_limit_per_ip", "rate_limit_per_form")
    @classmethod
    def _rates(cls, value: str | None) -> str | None:
        return _rate(value)

    @field_validator("field_map")
    @classmethod
    def _mapping(cls, value: dict[str, str]) -> dict[str, str]:
        return check_field_map(value)

    @field_validator("default_phone_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phone numbers know (e.g. SE, US, GB)")
        return region

    @model_validator(mode="after")
    def _coherent(self) -> FormSettings:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError("field names must be unique")
        if self.honeypot_field in names:
            raise ValueError("the honeypot field must not be a declared field")
        if self.consent_required and not self.consent_text:
            raise ValueError("consent_required needs consent_text")
        return self

    def field(self, name: str) -> FieldSpec | None:
        return self.specs.get(name)

    @functools.cached_property
    def specs(self) -> dict[str, FieldSpec]:
        """Declared fields by name (computed once: every post reads it)."""
        return {f.name: f for f in self.fields}

    @functools.cached_property
    def required_fields(self) -> tuple[str, ...]:
        """Fields a post must fill: the declared required ones, and email unless declared."""
        declared = tuple(f.name for f in self.fields if f.required)
        return declared if "email" in self.specs else ("email", *declared)

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin.lower() in self.allowed_origins


class FormIn(FormSettings):
    """A form's full definition as the registry API takes it."""

    funnel_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)

    def settings(self) -> FormSettings:
        return FormSettings.model_validate(
            self.model_dump(include=set(FormSettings.model_fields), mode="json")
        )


class FormCreate(FormIn):
    id: str = Field(pattern=ID_PATTERN)


class FormPatch(StorableText):
    """A partial update: only the given properties change."""

    model_config = ConfigDict(extra="forbid")

    funnel_id: str | None = Field(default=None, pattern=ID_PATTERN)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    site_url: str | None = None
    allowed_origins: list[str] | None = None
    fields: list[FieldSpec] | None = None
    allow_unknown_fields: bool | None = None
    consent_text: str | None = None
    consent_version: str | None = None
    consent_categories: list[str] | None = None
    consent_required: bool | None = None
    default_phone_region: str | None = None
    thank_you_url: str | None = None
    thank_you_message: str | None = None
    honeypot_field: str | None = None
    rate_limit_per_ip: str | None = None
    rate_limit_per_form: str | None = None
    field_map: dict[str, str] | None = None
    accept_body_only_signature: bool | None = None


class Form(BaseModel):
    """A registered form."""

    model_config = ConfigDict(frozen=True)

    id: str
    funnel_id: str
    name: str
    public_key: str = Field(description="Public: embedded in pages to send activity beacons.")
    settings: FormSettings = Field(default_factory=FormSettings)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def patched(self, patch: FormPatch) -> FormIn:
        """The definition after a partial update (validated again as a whole)."""
        current = self.settings.model_dump(mode="json") | {
            "funnel_id": self.funnel_id,
            "name": self.name,
        }
        return FormIn.model_validate(current | patch.model_dump(exclude_unset=True, mode="json"))


class FormOut(FormIn):
    id: str
    public_key: str
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(cls, form: Form) -> FormOut:
        return cls.model_validate(
            form.settings.model_dump(mode="json")
            | {
                "id": form.id,
                "funnel_id": form.funnel_id,
                "name": form.name,
                "public_key": form.public_key,
                "created_at": form.created_at,
                "updated_at": form.updated_at,
            }
        )


class FormList(BaseModel):
    forms: list[FormOut]
    next_after: str | None = None


# -- CORS per form: a browser may post only from the form's allowed origins -----------------


def cors_headers(origin: str | None, form: Form) -> dict[str, str]:
    """The CORS answer for a request from `origin`; a 403 problem for one the form refuses.

    Requests without an Origin header (servers, curl) are not browser cross-origin requests
    and pass; CORS protects visitors' browsers, not the endpoint.
    """
    if origin is None:
        return {}
    if not form.settings.allows_origin(origin):
        raise field_problem(
            403,
            "Origin not allowed",
            f"form {form.id!r} does not accept posts from this origin",
            type_="urn:funnel:problem:origin-not-allowed",
            field="origin",
            message="not in the form's allowed origins",
        )
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Vary": "Origin",
    }


def preflight_headers(cors: dict[str, str], methods: str = "POST, OPTIONS") -> dict[str, str]:
    return {
        **cors,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": "600",
    }


def with_cors(problem: Problem, cors: dict[str, str]) -> Problem:
    """Errors carry the CORS headers too, so the page's script can read the problem."""
    if cors:
        problem.headers = {**cors, **(problem.headers or {})}
    return problem
