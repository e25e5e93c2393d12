"""Webhook secrets per form: which ones a delivery may be signed with, and their hints (pure).

A form's own secret wins over the service-wide one. Rotating keeps the previous secret valid
for a grace period, so the sender (Typeform, a partner) can be switched over while its
deliveries keep arriving. The API shows a secret in full only once, when it generates it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lead_intake.platforms import SignatureInvalid

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


def verify_any(candidates: list[str], check: Callable[[str], None]) -> None:
    """Passes when `check` (which raises SignatureInvalid) passes for one of the secrets."""
    for candidate in candidates:
        try:
            check(candidate)
        except SignatureInvalid:
            continue
        return
    raise SignatureInvalid("signed with none of the valid secrets")


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
