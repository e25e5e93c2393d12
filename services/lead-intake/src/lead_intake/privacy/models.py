"""An erasure request and its answer; a person's data key as the API gives it (pure)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lead_intake.common.normalize import normalize_email, normalize_phone
from lead_intake.common.text_rules import StorableText


class ErasureIn(StorableText):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320, description="The person to forget.")
    phone: str | None = Field(
        default=None,
        max_length=40,
        description="Or, for a person known by phone alone: the number with +country code.",
    )

    @field_validator("email")
    @classmethod
    def _normalized(cls, value: str | None) -> str | None:
        return normalize_email(value) if value is not None else None

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return normalize_phone(value, None) if value is not None else None

    @model_validator(mode="after")
    def _one_identity(self) -> ErasureIn:
        if (self.email is None) == (self.phone is None):
            raise ValueError("name the person by email or by phone (one of them)")
        return self


class ErasureOut(BaseModel):
    request_id: UUID
    erased_leads: list[UUID]


class DataKeyOut(BaseModel):
    lead_id: UUID
    alg: Literal["A256GCM"] = "A256GCM"
    key: str = Field(description="The 256-bit key, base64url without padding.")


#: Leads one key lookup may name (a contact resolver's batch is far fewer).
MAX_KEY_LOOKUP = 500


class DataKeysIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_ids: list[UUID] = Field(
        min_length=1, max_length=MAX_KEY_LOOKUP, description="The leads whose keys to give."
    )


class DataKeysOut(BaseModel):
    """Every lead asked for is in exactly one list."""

    keys: list[DataKeyOut] = Field(description="The keys of the leads that have one.")
    erased: list[UUID] = Field(description="Erased: their keys are destroyed (410 alone).")
    unknown: list[UUID] = Field(description="No such lead here (404 alone).")
