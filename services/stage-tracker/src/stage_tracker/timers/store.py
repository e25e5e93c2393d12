"""The stall timers' SQL: which leads' timers are due."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


async def due_leads(conn: asyncpg.Connection, now: datetime, limit: int) -> list[UUID]:
    """Leads whose stall timer is due, locked; other workers skip them (SKIP LOCKED)."""
    rows = await conn.fetch(
        """SELECT lead_id FROM lead_stages WHERE timer_due_at <= $1
           ORDER BY timer_due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [r["lead_id"] for r in rows]
