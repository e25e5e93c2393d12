"""A form submission as a site posts it, validated and normalized (pure, no I/O)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator

from funnel_contracts import Utm


class SubmissionIn(BaseModel):
    """The JSON body of `POST /v1/forms/{form_id}/submissions`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=320, description="The person's email address (required).")
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    utm_source: str | None = Field(default=None, max_length=255)
    utm_medium: str | None = Field(default=None, max_length=255)
    utm_campaign: str | None = Field(default=None, max_length=255)
    utm_term: str | None = Field(default=None, max_length=255)
    utm_content: str | None = Field(default=None, max_length=255)
    landing_page: str | None = Field(default=None, max_length=2048)
    referrer: str | None = Field(default=None, max_length=2048)

    @field_validator("email")
    @classmethod
    def _normalize_email(cls, value: str) -> str:
        return normalize_email(value)

    @property
    def utm(self) -> Utm:
        return Utm(
            source=self.utm_source,
            medium=self.utm_medium,
            campaign=self.utm_campaign,
            term=self.utm_term,
            content=self.utm_content,
        )


def normalize_email(raw: str) -> str:
    """The identity form of an email: syntax-checked, trimmed, lower-cased."""
    try:
        valid = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    return valid.normalized.lower()
