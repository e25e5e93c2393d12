"""notifier's HTTP API."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from funnel_servicekit.auth import Principal, require_scopes
from notifier import store

router = APIRouter(tags=["touches"])


@router.get("/v1/leads/{lead_id}/touches")
async def list_touches(
    lead_id: UUID,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("leads:read"))],
) -> dict[str, Any]:
    """Every touch scheduled for a lead, with its status."""
    async with request.app.state.runtime.pool.acquire() as conn:
        touches = await store.touches_of(conn, lead_id)
    return {"lead_id": str(lead_id), "touches": touches}
