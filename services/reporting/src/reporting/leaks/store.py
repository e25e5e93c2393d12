"""The leaks table, and the step counts a check reads (the conversion query's signed rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from funnel_contracts import LeakDetected, LeakResolved
from reporting.domain.dimensions import ALL
from reporting.leaks.models import Counts, Finding
from reporting.reports import store as reports
from reporting.reports.models import Period

SOURCE_DIM = "first_source"


async def funnels(conn: asyncpg.Connection) -> dict[str, list[str]]:
    return await reports.funnels(conn)


async def step_counts(
    conn: asyncpg.Connection,
    funnel_id: str,
    from_stage: str,
    to_stage: str,
    period: Period,
    window_days: int,
) -> dict[str, Counts]:
    """Leads entering from_stage in the period and reaching to_stage within the window:
    overall ("all") and per first-touch source ("source:<value>")."""
    out: dict[str, Counts] = {}
    for dim in (ALL[0], SOURCE_DIM):
        entered, reached = await reports.conversion_counts(
            conn,
            funnel_id,
            [from_stage, to_stage],
            period,
            window_days=window_days,
            cohort="none",
            dim=dim,
        )
        for (_, segment), n in entered.items():
            name = "all" if dim == ALL[0] else f"source:{segment}"
            out[name] = Counts(n, reached.get((None, segment, to_stage), 0))
    return out


# One check at a time across the replicas (pg_advisory_xact_lock's key: "leaks" in ASCII).
WATCH_LOCK = 0x6C65616B73


async def lock_the_watch(conn: asyncpg.Connection) -> None:
    """Until the transaction ends, no other replica's check runs: one open leak per step."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", WATCH_LOCK)


async def open_leaks(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM leaks WHERE resolved_at IS NULL FOR UPDATE"))


async def open_leak(
    conn: asyncpg.Connection,
    leak_id: UUID,
    funnel_id: str,
    finding: Finding,
    window_days: int,
    at: datetime,
) -> bool:
    """A new open leak; False when the step already has one open (under `lock_the_watch`)."""
    from_stage, to_stage, segment = finding.key
    return bool(
        await conn.fetchval(
            """INSERT INTO leaks (leak_id, funnel_id, from_stage, to_stage, segment,
                   window_days, baseline_entered, baseline_converted, current_entered,
                   current_converted, p_value, opened_at, checked_at)
               SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::integer,
                      $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::double precision,
                      $12::timestamptz, $12::timestamptz
               WHERE NOT EXISTS (
                   SELECT 1 FROM leaks WHERE funnel_id = $2 AND from_stage = $3
                       AND to_stage = $4 AND segment = $5 AND resolved_at IS NULL)
               RETURNING true""",
            leak_id,
            funnel_id,
            from_stage,
            to_stage,
            segment,
            window_days,
            finding.baseline.entered,
            finding.baseline.converted,
            finding.current.entered,
            finding.current.converted,
            finding.p_value,
            at,
        )
    )


async def update_leak(
    conn: asyncpg.Connection,
    leak_id: UUID,
    current: Counts,
    p_value: float,
    at: datetime,
    *,
    resolved: bool,
) -> None:
    await conn.execute(
        """UPDATE leaks SET current_entered = $2, current_converted = $3, p_value = $4,
               checked_at = $5, resolved_at = CASE WHEN $6::boolean THEN $5::timestamptz END
           WHERE leak_id = $1""",
        leak_id,
        current.entered,
        current.converted,
        p_value,
        at,
        resolved,
    )


async def leaks_of(
    conn: asyncpg.Connection, funnel_id: str, since: datetime
) -> list[dict[str, Any]]:
    """Open leaks, and those resolved since `since`, newest first."""
    rows = await conn.fetch(
        """SELECT * FROM leaks
           WHERE funnel_id = $1 AND (resolved_at IS NULL OR resolved_at >= $2)
           ORDER BY opened_at DESC, leak_id""",
        funnel_id,
        since,
    )
    return [dict(r) for r in rows]


async def record_leak_events(
    conn: asyncpg.Connection, events: list[LeakDetected | LeakResolved]
) -> None:
    """The leaks as their events tell them (the projection of funnel.report-events): what
    the watch wrote itself is already there; a rebuild gets the leaks back from the topic.
    A leak the table has already is kept as is. Each leak's events share its partition (its
    id is the record key), so its detection comes before its resolution; leaks of one step
    may come in any order."""
    for e in events:
        if isinstance(e, LeakDetected):
            await conn.execute(
                """INSERT INTO leaks (leak_id, funnel_id, from_stage, to_stage, segment,
                       window_days, baseline_entered, baseline_converted, current_entered,
                       current_converted, p_value, opened_at, checked_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
                   ON CONFLICT (leak_id) DO NOTHING""",
                e.leak_id,
                e.funnel_id,
                e.from_stage,
                e.to_stage,
                e.segment,
                e.window_days,
                e.baseline_entered,
                _converted(e.baseline_converted, e.baseline_rate, e.baseline_entered),
                e.current_entered,
                _converted(e.current_converted, e.current_rate, e.current_entered),
                e.p_value,
                e.detected_at,
            )
        else:
            await conn.execute(
                """UPDATE leaks SET resolved_at = $2, checked_at = $2, p_value = $3
                   WHERE leak_id = $1 AND resolved_at IS NULL""",
                e.leak_id,
                e.resolved_at,
                e.p_value,
            )


def _converted(count: int | None, rate: float, entered: int) -> int:
    return count if count is not None else round(rate * entered)
