"""The timeline's reads: a page of one lead's items (one range scan of the page index), and
whether reporting ever saw the lead or has erased them."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

import asyncpg

from reporting.timeline.models import Before

_COLUMNS = "SELECT at, key, kind, fields FROM timeline_timeline WHERE lead_id = $1"
_ORDER = " ORDER BY at DESC, key DESC LIMIT $2"
# The page queries (public for the benchmark, which runs them on naive copies of the table).
FIRST_PAGE = _COLUMNS + _ORDER
BEFORE_INSTANT = _COLUMNS + " AND at < $3" + _ORDER
BEFORE_ITEM = _COLUMNS + " AND (at, key) < ($3, $4)" + _ORDER


async def page(
    conn: asyncpg.Connection, lead_id: UUID, before: Before | None, rows: int
) -> list[asyncpg.Record]:
    """Up to `rows` items of the lead, newest first, strictly before `before`."""
    if before is None:
        return list(await conn.fetch(FIRST_PAGE, lead_id, rows))
    if before.key is None:
        return list(await conn.fetch(BEFORE_INSTANT, lead_id, rows, before.at))
    return list(await conn.fetch(BEFORE_ITEM, lead_id, rows, before.at, before.key))


async def lead_status(
    conn: asyncpg.Connection, lead_id: UUID
) -> Literal["seen", "erased", "unknown"]:
    row = await conn.fetchrow(
        # A state still empty is no person's (the record key of an event about something
        # else, such as a team task about a funnel leak), unless it has timeline items.
        """SELECT EXISTS (SELECT 1 FROM erased_leads WHERE lead_id = $1) AS erased,
                  EXISTS (SELECT 1 FROM lead_states WHERE lead_id = $1 AND state <> '{}')
                  OR EXISTS (SELECT 1 FROM timeline_timeline WHERE lead_id = $1) AS seen""",
        lead_id,
    )
    if row["erased"]:
        return "erased"
    return "seen" if row["seen"] else "unknown"
