"""stage-tracker's HTTP API."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from stage_tracker import store

router = APIRouter(tags=["leads"])


@router.get("/v1/leads/{lead_id}/journey")
async def get_journey(
    lead_id: UUID,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("leads:read"))],
) -> dict[str, Any]:
    """A lead's current stage and every transition with the event that caused it."""
    async with request.app.state.runtime.pool.acquire() as conn:
        journey = await store.journey(conn, lead_id)
    if journey is None:
        raise Problem(
            404,
            "Unknown lead",
            f"no lead {lead_id} in any funnel",
            type_="urn:funnel:problem:unknown-lead",
            errors=[{"field": "lead_id", "message": "unknown lead"}],
        )
    return journey
