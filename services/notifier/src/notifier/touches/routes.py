"""The touches through the internal API: a lead's touches, replay of a failed touch."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from funnel_servicekit.problems import conflict, not_found
from notifier.deps import Admin, Conn, Reader, Runtime
from notifier.touches import service

router = APIRouter(tags=["touches"])


@router.get("/v1/leads/{lead_id}/touches")
async def list_touches(lead_id: UUID, _: Reader, conn: Conn) -> dict[str, Any]:
    """Every touch of a lead: scheduled, sent, suppressed or cancelled (with why), failed."""
    return {"lead_id": str(lead_id), "touches": await service.touches_of(conn, lead_id)}


@router.post("/v1/touches/{touch_id}/replay", status_code=202)
async def replay_touch(touch_id: UUID, _: Admin, runtime: Runtime) -> dict[str, Any]:
    """Schedule a failed touch again, due now (same touch id, so receivers can deduplicate)."""
    replayed = await service.replay(runtime.transactions, touch_id)
    if replayed == "unknown":
        raise not_found("touch", "touch_id", touch_id)
    if replayed == "not failed":
        raise conflict("Only a failed touch can be replayed", field="touch_id")
    return {"touch_id": str(touch_id), "status": "scheduled"}
