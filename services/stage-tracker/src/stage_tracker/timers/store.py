"""The stall timers' SQL: which leads' timers are due."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


async def due_leads(conn: asyncpg.Connection, now: datetime, limit: int) -> list[UUID]:
    """Leads whose stall timer is due, locked; other workers skip them (SKIP LOCKED). Each
    lead's advisory lock is tried too (every writer of a lead takes it, decision 0077): a
    lead a consumer or a person is changing now is left for the next round, never waited for
    (so no lock cycle with a writer that holds it and waits for one of these rows)."""
    rows = await conn.fetch(
        """SELECT lead_id FROM lead_stages WHERE timer_due_at <= $1
             AND pg_try_advisory_xact_lock(hashtext('lead:' || lead_id::text))
           ORDER BY timer_due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [r["lead_id"] for r in rows]
