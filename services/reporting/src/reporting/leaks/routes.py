"""GET /v1/funnels/{funnel_id}/leaks: the open leaks of a funnel and those resolved lately."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path

from reporting.deps import Reader, Runtime
from reporting.leaks import service

router = APIRouter(tags=["leaks"])

FunnelId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


@router.get("/v1/funnels/{funnel_id}/leaks")
async def get_leaks(funnel_id: FunnelId, runtime: Runtime, _: Reader) -> dict[str, Any]:
    """Open leaks, and leaks resolved in the last 30 days, newest first."""
    return await service.leaks(runtime, funnel_id, datetime.now(UTC))
