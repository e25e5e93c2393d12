"""notifier's internal API: touches of a lead, sales tasks, replay of failed touches."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from notifier import store, task_store
from notifier.consumer import WAKE_CHANNEL

router = APIRouter(tags=["touches"])


@router.get("/v1/leads/{lead_id}/touches")
async def list_touches(
    lead_id: UUID,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("leads:read"))],
) -> dict[str, Any]:
    """Every touch of a lead: scheduled, sent, suppressed or cancelled (with why), failed."""
    async with request.app.state.runtime.pool.acquire() as conn:
        touches = await store.touches_of(conn, lead_id)
    return {"lead_id": str(lead_id), "touches": touches}


@router.post("/v1/touches/{touch_id}/replay", status_code=202)
async def replay_touch(
    touch_id: UUID,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("touches:admin"))],
) -> dict[str, Any]:
    """Schedule a failed touch again, due now (same touch id, so receivers can deduplicate)."""
    async with request.app.state.runtime.pool.acquire() as conn, conn.transaction():
        if not await store.replay(conn, touch_id):
            exists = await store.touch_lead(conn, touch_id)
            if exists is None:
                raise Problem(404, "No such touch", type_="urn:funnel:problem:not-found")
            raise Problem(
                409,
                "Only a failed touch can be replayed",
                type_="urn:funnel:problem:conflict",
            )
        await conn.execute(f"NOTIFY {WAKE_CHANNEL}")
    return {"touch_id": str(touch_id), "status": "scheduled"}


@router.get("/v1/tasks", tags=["tasks"])
async def list_tasks(
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("leads:read"))],
    status: Annotated[Literal["open", "done"] | None, Query()] = None,
    lead_id: Annotated[UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Tasks for the sales team ("hot lead: call now"), newest first."""
    async with request.app.state.runtime.pool.acquire() as conn:
        tasks = await task_store.listing(conn, status=status, lead_id=lead_id, limit=limit)
    return {"tasks": tasks}
