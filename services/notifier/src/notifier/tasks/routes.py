"""Sales tasks through the internal API: list and read (leads:read), change (leads:write)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response

from funnel_servicekit.problems import invalid
from notifier.deps import Conn, KeyNames, Reader, Runtime, Writer
from notifier.tasks import service
from notifier.tasks.models import DEFAULT_PAGE, MAX_PAGE, Cursor, TaskChange, TaskFilter, etag

router = APIRouter(tags=["tasks"])


@router.get("/v1/tasks")
async def list_tasks(
    _: Reader,
    conn: Conn,
    filters: Annotated[TaskFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Tasks for the sales team, newest first, a page at a time: pass `next_after` back as
    `after` for the next page (null on the last). `tasks` repeats `items` for the callers of
    the first version of this list."""
    try:
        cursor = Cursor.decode(after) if after is not None else None
    except ValueError as exc:
        raise invalid("after", str(exc)) from exc
    page = await service.list_tasks(conn, filters, after=cursor, limit=limit)
    return {"items": page.items, "next_after": page.next_after, "tasks": page.items}


@router.get("/v1/tasks/{task_id}")
async def get_task(task_id: UUID, _: Reader, conn: Conn, response: Response) -> dict[str, Any]:
    """One task, its version as ETag (send it back as If-Match to change it)."""
    task = await service.get_task(conn, task_id)
    response.headers["ETag"] = etag(task["version"])
    return task


@router.patch("/v1/tasks/{task_id}")
async def change_task(
    task_id: UUID,
    change: TaskChange,
    principal: Writer,
    runtime: Runtime,
    names: KeyNames,
    response: Response,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> dict[str, Any]:
    """Mark a task done or dismissed (or open again), hand it to someone, move its due time.
    With If-Match, only if the task is still at that version (else 412, nothing written)."""
    task = await service.change_task(
        runtime.transactions,
        service.Change(
            task_id,
            change.changes(),
            actor=principal.name,
            if_match=if_match,
            assignees=names,
        ),
    )
    response.headers["ETag"] = etag(task["version"])
    return task
