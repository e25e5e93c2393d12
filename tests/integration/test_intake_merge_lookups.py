"""Look-ups by a lead read by index, not whole tables (decision 0086): a lead's notes with
those of the leads merged into it, the rows a merge moves (visitors, Meta deliveries) and an
erasure's merged leads. Each statement, as the store sends it, is planned generically (the
plan each connection keeps) on 5,000 people, each with a visitor, a delivery and activities;
no plan may read a whole table, and the notes come back right: both leads', newest first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES
from lead_intake.activities import store as activities
from lead_intake.app import MIGRATIONS
from lead_intake.leads import store as leads
from lead_intake.privacy import store as privacy
from lead_intake.settings import IntakeSettings
from tests.integration.plans import generic_plan, migrated, statements_sent, whole_tables

pytestmark = pytest.mark.integration

ROWS = 5000


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with migrated(
        fresh_dsn, IntakeSettings(database_url=fresh_dsn), MIGRATIONS
    ) as connection:
        await connection.execute(
            """WITH people AS (
                   INSERT INTO leads (id, email, source, captured_at)
                   SELECT gen_random_uuid(), 'p' || g || '@example.com', 'form', now()
                   FROM generate_series(1, $1::int) g RETURNING id),
               seen AS (INSERT INTO visitors (visitor_id, lead_id)
                        SELECT 'v-' || id, id FROM people),
               meta AS (INSERT INTO platform_leads_seen (platform, external_id, lead_id)
                        SELECT 'meta', 'x-' || id, id FROM people)
               INSERT INTO activities (id, lead_id, activity_type, occurred_at)
               SELECT gen_random_uuid(), id, t, now() - random() * interval '30 days'
               FROM people, unnest(ARRAY['page_view', 'call_logged']) t""",
            ROWS,
        )
        yield connection


async def _whole_tables(conn: asyncpg.Connection, query: str, types: str, args: str) -> list[str]:
    """The tables the statement's generic plan reads whole."""
    return whole_tables(await generic_plan(conn, query, types, args))


async def test_a_leads_notes_come_with_its_merged_leads_from_the_index(
    conn: asyncpg.Connection,
) -> None:
    survivor, other = uuid4(), uuid4()
    for lead in (survivor, other):
        await conn.execute(
            "INSERT INTO leads (id, source, captured_at) VALUES ($1, 'form', now())", lead
        )
    await conn.execute("UPDATE leads SET merged_into = $1 WHERE id = $2", survivor, other)
    notes = [(survivor, "call_logged", 3), (other, "meeting_held", 2), (survivor, "page_view", 1)]
    for lead, kind, days in notes:
        await conn.execute(
            """INSERT INTO activities (id, lead_id, activity_type, occurred_at)
               VALUES (gen_random_uuid(), $1, $2, now() - make_interval(days => $3))""",
            lead,
            kind,
            days,
        )
    await conn.execute("ANALYZE")

    found = await activities.offline_touches(conn, survivor, OFFLINE_ACTIVITY_TYPES, 50)
    # Both leads' offline touches (not the page view), newest first.
    assert [(a.lead_id, a.activity_type) for a in found] == [
        (other, "meeting_held"),
        (survivor, "call_logged"),
    ]

    [query] = await statements_sent(
        conn, lambda: activities.offline_touches(conn, survivor, OFFLINE_ACTIVITY_TYPES, 50)
    )
    assert (
        await _whole_tables(
            conn, query, "uuid, text[], int", f"'{survivor}', '{{call_logged}}', 50"
        )
        == []
    )


async def test_a_merge_and_an_erasure_find_a_leads_rows_by_index(
    conn: asyncpg.Connection,
) -> None:
    survivor, other = (
        r["id"] for r in await conn.fetch("SELECT id FROM leads ORDER BY id LIMIT 2")
    )
    await conn.execute("ANALYZE")
    merged: dict[str, Any] = {
        "takes_email": False,
        "email": f"p-{survivor}@example.com",
        **dict.fromkeys(("phone", "first_name", "last_name", "locale", "time_zone", "consent")),
        "custom_fields": {},
        "is_test": False,
    }
    async with conn.transaction():
        moved = await statements_sent(conn, lambda: leads.fold(conn, survivor, other, merged))
    # The merge moved the other lead's rows to the survivor.
    assert (
        await conn.fetchval("SELECT lead_id FROM visitors WHERE visitor_id = $1", f"v-{other}")
        == survivor
    )
    assert (
        await conn.fetchval(
            "SELECT lead_id FROM platform_leads_seen WHERE external_id = $1", f"x-{other}"
        )
        == survivor
    )
    for table in ("visitors", "platform_leads_seen", "activities"):
        [update] = [q for q in moved if q.startswith(f"UPDATE {table} ")]
        assert await _whole_tables(conn, update, "uuid, uuid", f"'{survivor}', '{other}'") == []

    [locked] = [
        q
        for q in await statements_sent(conn, lambda: privacy.with_merged(conn, [survivor]))
        if "merged_into = f.id" in q
    ]
    assert await _whole_tables(conn, locked, "uuid[]", f"'{{{survivor}}}'") == []
    async with conn.transaction():
        erasing = await statements_sent(conn, lambda: privacy.erase_leads(conn, [survivor, other]))
    assert await conn.fetchval("SELECT count(*) FROM visitors WHERE lead_id = $1", survivor) == 0
    [deleted] = [q for q in erasing if q.startswith("DELETE FROM visitors")]
    assert await _whole_tables(conn, deleted, "uuid[]", f"'{{{survivor}}}'") == []
