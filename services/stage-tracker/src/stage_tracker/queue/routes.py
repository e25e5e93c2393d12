"""The work queue: `GET /v1/leads`, a funnel's leads by their score now (or their entry)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from funnel_contracts.events import Temperature
from funnel_servicekit.problems import invalid, not_found
from stage_tracker.deps import Conn, Reader, Runtime
from stage_tracker.funnels.models.definition import UnknownFunnel
from stage_tracker.queue import service
from stage_tracker.queue.models import MAX_LIMIT, BadCursor, LeadFilter, Sort, decode_cursor

router = APIRouter(tags=["leads"])


@router.get("/v1/leads")
async def list_leads(
    _: Reader,
    runtime: Runtime,
    conn: Conn,
    funnel_id: Annotated[str, Query(min_length=1, max_length=100)],
    stage: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    temperature: Temperature | None = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    stalled: Annotated[
        bool | None, Query(description="The stall timer has passed, or the lead is stalled.")
    ] = None,
    entered_after: Annotated[datetime | None, Query(description="entered_at >= this")] = None,
    entered_before: Annotated[datetime | None, Query(description="entered_at < this")] = None,
    test: Annotated[
        bool, Query(description="true: the test leads alone (left out otherwise).")
    ] = False,
    sort: Sort = "-score",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    after: Annotated[
        str | None, Query(max_length=1000, description="`next_after` of the previous page.")
    ] = None,
) -> dict[str, Any]:
    """A funnel's leads by their score now (cooled by the wall clock), in cursor pages."""
    for name, value in (("entered_after", entered_after), ("entered_before", entered_before)):
        if value is not None and value.tzinfo is None:
            raise invalid(name, "a datetime with its UTC offset")
    cursor = None
    if after is not None:
        try:
            cursor = decode_cursor(after, sort)
        except BadCursor as exc:
            raise invalid("after", str(exc), title="Invalid cursor") from None
    query = LeadFilter(
        funnel_id, stage, temperature, owner, stalled, entered_after, entered_before, test
    )
    context = runtime.context
    try:
        page = await service.list_leads(
            conn, context.registry, query, sort, limit, context.clock.now(), cursor
        )
    except UnknownFunnel:
        raise not_found("funnel", "funnel_id", funnel_id) from None
    except service.UnknownStage:
        raise invalid("stage", f"no stage {stage!r} in funnel {funnel_id}") from None
    return {"items": page.items, "next_after": page.next_after}
