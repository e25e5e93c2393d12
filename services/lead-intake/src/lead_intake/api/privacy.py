"""Erasure: forget a person here and tell every other service to do the same."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from funnel_contracts import LeadErased
from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.outbox import enqueue
from lead_intake.api.context import intake
from lead_intake.normalize import normalize_email
from lead_intake.store import leads
from lead_intake.text_rules import StorableText

router = APIRouter(tags=["privacy"])


class ErasureIn(StorableText):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, description="The person to forget.")

    @field_validator("email")
    @classmethod
    def _normalized(cls, value: str) -> str:
        return normalize_email(value)


class ErasureOut(BaseModel):
    request_id: UUID
    erased_leads: list[UUID]


@router.post("/v1/erasure-requests", status_code=202)
async def request_erasure(
    body: ErasureIn,
    request: Request,
    principal: Annotated[Principal, Depends(require_scopes("leads:write"))],
) -> ErasureOut:
    """Erase a person by email: their data here now, funnel.lead.erased for the others."""
    ctx = intake(request)
    request_id = uuid4()
    now = datetime.now(UTC)
    async with ctx.pool.acquire() as conn, conn.transaction():
        lead_ids = await leads.lead_ids_by_email(conn, body.email)
        await leads.erase_leads(conn, lead_ids)
        await leads.record_erasure(
            conn,
            request_id,
            hashlib.sha256(body.email.encode()).hexdigest(),
            lead_ids,
            principal.name,
        )
        for lead_id in lead_ids:
            event = LeadErased(lead_id=lead_id, request_id=request_id, erased_at=now)
            await enqueue(conn, ctx.outbox.schema, event, source=ctx.outbox.source)
    return ErasureOut(request_id=request_id, erased_leads=lead_ids)
