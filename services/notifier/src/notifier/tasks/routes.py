"""Sales tasks through the internal API (scope leads:read)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from notifier.deps import Conn, Reader
from notifier.tasks import service

router = APIRouter(tags=["tasks"])


@router.get("/v1/tasks")
async def list_tasks(
    _: Reader,
    conn: Conn,
    status: Annotated[service.Status | None, Query()] = None,
    lead_id: Annotated[UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Tasks for the sales team ("hot lead: call now"), newest first."""
    tasks = await service.list_tasks(conn, status=status, lead_id=lead_id, limit=limit)
    return {"tasks": tasks}
