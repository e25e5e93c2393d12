"""The timeline's use case: a page of a person's items, newest first (read only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from reporting.runtime import ReportingRuntime
from reporting.timeline import store
from reporting.timeline.models import Before, cursor


@dataclass(frozen=True)
class Page:
    status: Literal["seen", "erased", "unknown"]
    items: list[dict[str, Any]] = field(default_factory=list)
    next_before: str | None = None


async def timeline(
    runtime: ReportingRuntime, lead_id: UUID, before: Before | None, limit: int
) -> Page:
    """Up to `limit` items before `before` (newest first), and the cursor of the next page
    when there is one. A page with items is one index range scan; only an empty page asks
    whether the lead was ever seen or has been erased."""
    async with runtime.pool.acquire() as conn:
        rows = await store.page(conn, lead_id, before, limit + 1)
        status = "seen" if rows else await store.lead_status(conn, lead_id)
    if status != "seen":
        return Page(status)
    shown = rows[:limit]
    items = [{"at": r["at"].isoformat(), "kind": r["kind"], **r["fields"]} for r in shown]
    more = len(rows) > limit
    return Page("seen", items, cursor(shown[-1]["at"], shown[-1]["key"]) if more else None)
