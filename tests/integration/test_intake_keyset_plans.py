"""Intake's pages that go on from a key (the people to index again, the forms, the Meta
forms) start at that key in the index with the one plan each connection keeps for them
(decision 0083): their statements, as the store functions send them, are planned generically
on a table of many rows and the plan must seek to the key, not filter from the index's start
(`$1 IS NULL OR id > $1` does the latter under a generic plan)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from lead_intake.app import MIGRATIONS
from lead_intake.forms import store as forms
from lead_intake.people import store as people
from lead_intake.settings import IntakeSettings
from lead_intake.webhooks import store as webhooks
from tests.integration.plans import generic_plan, migrated, statements_sent

pytestmark = pytest.mark.integration

ROWS = 5000


async def _sent(conn: asyncpg.Connection, call: Callable[[], Awaitable[Any]]) -> str:
    """The one statement `call` sends on `conn`."""
    [query] = await statements_sent(conn, call)
    return query


async def _generic_plan(conn: asyncpg.Connection, query: str, types: str, args: str) -> str:
    return json.dumps(await generic_plan(conn, query, types, args))


@pytest.fixture
async def conn(fresh_dsn: str) -> Any:
    async with migrated(
        fresh_dsn, IntakeSettings(database_url=fresh_dsn), MIGRATIONS
    ) as connection:
        await connection.execute(
            """INSERT INTO leads (id, email, source, captured_at)
               SELECT gen_random_uuid(), 'p' || g || '@example.com', 'form', now()
               FROM generate_series(1, $1::int) g""",
            ROWS,
        )
        await connection.execute(
            """INSERT INTO forms (id, funnel_id, name, public_key, definition)
               SELECT 'form-' || lpad(g::text, 5, '0'), 'digital-sales', 'F', 'pk' || g, '{}'
               FROM generate_series(1, $1::int) g""",
            ROWS,
        )
        await connection.execute("ANALYZE leads; ANALYZE forms")
        yield connection


async def test_the_people_to_index_start_at_their_key(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    middle: UUID = await conn.fetchval("SELECT id FROM leads ORDER BY id OFFSET $1 LIMIT 1", 2500)
    async with conn.transaction():
        query = await _sent(conn, lambda: people.people_to_index(conn, middle, 10))
        plan = await _generic_plan(conn, query, "uuid, int", f"'{middle}', 10")
    assert '"Index Cond": "(id > ' in plan, plan
    async with conn.transaction():
        page = await people.people_to_index(conn, middle, 10)
        first = await people.people_to_index(conn, None, 10)
    assert [p[0] for p in page] == sorted(p[0] for p in page)
    assert page[0][0] > middle
    assert first[0][0] == await conn.fetchval("SELECT id FROM leads ORDER BY id LIMIT 1")


async def test_the_forms_pages_start_at_their_key(conn: asyncpg.Connection) -> None:
    query = await _sent(conn, lambda: forms.list_forms(conn, limit=10, after="form-02500"))
    plan = await _generic_plan(conn, query, "text, int", "'form-02500', 10")
    assert '"Index Cond": "(id > ' in plan, plan
    page = await forms.list_forms(conn, limit=3, after="form-02500")
    assert [f.id for f in page] == ["form-02501", "form-02502", "form-02503"]
    assert [f.id for f in await forms.list_forms(conn, limit=1, after=None)] == ["form-00001"]


async def test_the_meta_forms_pages_start_at_their_key(conn: asyncpg.Connection) -> None:
    query = await _sent(conn, lambda: webhooks.list_meta_forms(conn, limit=10, after="m"))
    assert "meta_form_id > coalesce($1::text, '')" in query
    assert "IS NULL OR" not in query
