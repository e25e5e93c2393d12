"""Erasure: forget a person here and tell every other service to do the same."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from funnel_contracts import LeadErased
from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.outbox import enqueue
from lead_intake.api.context import intake
from lead_intake.normalize import normalize_email, normalize_phone
from lead_intake.store import activities, leads, subject_keys
from lead_intake.text_rules import StorableText

router = APIRouter(tags=["privacy"])


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


@router.post("/v1/erasure-requests", status_code=202)
async def request_erasure(
    body: ErasureIn,
    request: Request,
    principal: Annotated[Principal, Depends(require_scopes("leads:write"))],
) -> ErasureOut:
    """Erase a person by email (or phone): their data and key here now, lead.erased for others."""
    ctx = intake(request)
    request_id = uuid4()
    now = datetime.now(UTC)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if body.email is not None:
            lead_ids = await leads.lead_ids_by_email(conn, body.email)
        else:
            assert body.phone is not None
            lead_ids = await leads.lead_ids_by_phone_alone(conn, body.phone)
        await leads.erase_leads(conn, lead_ids)
        # Same transaction: once the erasure commits, no key exists that opens what the
        # topics still hold of this person.
        await subject_keys.shred(conn, lead_ids)
        if body.email is not None:
            await activities.forget_pending_email(conn, body.email)  # what waited for it
        identity = body.email or body.phone or ""
        await leads.record_erasure(
            conn,
            request_id,
            hashlib.sha256(identity.encode()).hexdigest(),
            lead_ids,
            principal.name,
        )
        for lead_id in lead_ids:
            event = LeadErased(lead_id=lead_id, request_id=request_id, erased_at=now)
            await enqueue(conn, ctx.outbox.schema, event, source=ctx.outbox.source)
    return ErasureOut(request_id=request_id, erased_leads=lead_ids)
