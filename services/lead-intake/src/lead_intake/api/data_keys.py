"""A person's data key, for the services that must read the personal data sealed in events."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from funnel_contracts.sealed import key_to_text
from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from lead_intake.api.context import intake

router = APIRouter(tags=["privacy"])


class DataKeyOut(BaseModel):
    lead_id: UUID
    alg: Literal["A256GCM"] = "A256GCM"
    key: str = Field(description="The 256-bit key, base64url without padding.")


@router.get(
    "/v1/leads/{lead_id}/data-key",
    responses={404: {"description": "No such lead"}, 410: {"description": "The lead was erased"}},
)
async def get_data_key(
    lead_id: UUID,
    request: Request,
    response: Response,
    _: Annotated[Principal, Depends(require_scopes("pii:decrypt"))],
) -> DataKeyOut:
    """The key that opens a lead's sealed personal data; 410 once the person is erased."""
    async with intake(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT l.erased_at, k.data_key FROM leads l
               LEFT JOIN subject_keys k ON k.lead_id = l.id WHERE l.id = $1""",
            lead_id,
        )
    if row is not None and row["erased_at"] is not None:
        raise Problem(
            410,
            "Lead erased",
            "the person was erased; their data key is destroyed",
            type_="urn:funnel:problem:erased",
            errors=[{"field": "lead_id", "message": "erased"}],
        )
    if row is None or row["data_key"] is None:
        raise Problem(
            404,
            "Unknown lead",
            "no data key for this lead",
            type_="urn:funnel:problem:not-found",
            errors=[{"field": "lead_id", "message": "no such lead"}],
        )
    response.headers["Cache-Control"] = "no-store"
    return DataKeyOut(lead_id=lead_id, key=key_to_text(row["data_key"]))
