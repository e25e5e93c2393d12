"""reporting's HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from funnel_servicekit.auth import Principal, require_scopes
from reporting import projection

router = APIRouter(tags=["reports"])
FunnelId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


@router.get("/v1/funnels/{funnel_id}/snapshot")
async def get_snapshot(
    funnel_id: FunnelId,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("reports:read"))],
) -> dict[str, Any]:
    """How many leads are in each stage of a funnel now."""
    async with request.app.state.runtime.pool.acquire() as conn:
        return await projection.snapshot(conn, funnel_id)
