"""`GET /v1/leads/{lead_id}/timeline`: a person's timeline, a page at a time."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.problems import field_problem, invalid, not_found
from reporting.deps import Runtime
from reporting.timeline import service
from reporting.timeline.models import DEFAULT_LIMIT, MAX_LIMIT, CursorError, parse_before

router = APIRouter(tags=["timeline"])

LeadsReader = Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ))]


@router.get("/v1/leads/{lead_id}/timeline")
async def get_timeline(
    lead_id: UUID,
    runtime: Runtime,
    _: LeadsReader,
    before: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the next_before of the previous page, or an ISO 8601 instant with "
            "its offset: items strictly before it",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Everything that happened to the person, newest first: submissions, activities, moves,
    touches and their opens and clicks, tasks, calls, meetings, events, notes, owner changes."""
    try:
        start = parse_before(before) if before is not None else None
    except CursorError as exc:
        raise invalid("before", str(exc)) from exc
    page = await service.timeline(runtime, lead_id, start, limit)
    if page.status == "unknown":
        raise not_found("lead", "lead_id", str(lead_id))
    if page.status == "erased":
        raise field_problem(
            410,
            "Lead erased",
            "this person was erased: their timeline is gone",
            type_="urn:funnel:problem:gone",
            field="lead_id",
            message="erased",
        )
    return {"lead_id": str(lead_id), "items": page.items, "next_before": page.next_before}
