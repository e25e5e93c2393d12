"""A page of open tasks reads the open tasks, not every task ever closed (decision 0087): on
5,000 done tasks and a few open ones, the list of open tasks, and of one assignee's open
tasks, comes back right, newest first, and its statement, as the store sends it and planned
generically (the plan each connection keeps), reads only a few rows of the tasks table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import pytest

from notifier.app import MIGRATIONS
from notifier.settings import NotifierSettings
from notifier.tasks import store
from notifier.tasks.models import TaskFilter
from tests.integration.plans import generic_plan_as_sent, migrated, rows_read, sent_with_args

pytestmark = pytest.mark.integration

CLOSED = 5000


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with migrated(
        fresh_dsn, NotifierSettings(database_url=fresh_dsn), MIGRATIONS
    ) as connection:
        # Closed tasks, older and newer than the open ones, half of them the rep's.
        await connection.execute(
            """INSERT INTO tasks (id, lead_id, playbook, title, status, assignee, created_at)
               SELECT gen_random_uuid(), gen_random_uuid(), 'call', 'Call',
                   CASE WHEN g % 2 = 0 THEN 'done' ELSE 'dismissed' END,
                   CASE WHEN g % 2 = 0 THEN 'rep-a' ELSE 'rep-b' END,
                   now() - make_interval(secs => g)
               FROM generate_series(1, $1::int) g""",
            CLOSED,
        )
        yield connection


async def test_a_page_of_open_tasks_reads_the_open_tasks(conn: asyncpg.Connection) -> None:
    opened: list[UUID] = []
    for i, assignee in enumerate(("rep-a", "rep-b", "rep-a", None, "rep-a")):
        opened.append(
            await conn.fetchval(
                """INSERT INTO tasks (id, lead_id, playbook, title, assignee, created_at)
                   VALUES (gen_random_uuid(), gen_random_uuid(), 'call', 'Call', $1,
                       now() - make_interval(secs => $2::int * 1000 + 500))
                   RETURNING id""",
                assignee,
                i,
            )
        )
    await conn.execute("ANALYZE tasks")

    open_tasks = TaskFilter(status="open")
    page = await store.listing(conn, open_tasks, after=None, limit=50)
    assert [r["id"] for r in page] == opened  # newest first
    mine = TaskFilter(status="open", assignee="rep-a")
    assert [r["id"] for r in await store.listing(conn, mine, after=None, limit=50)] == [
        opened[0],
        opened[2],
        opened[4],
    ]

    for filters in (open_tasks, mine):

        async def page_of_three(f: TaskFilter = filters) -> None:
            await store.listing(conn, f, after=None, limit=3)

        [(query, args)] = await sent_with_args(conn, page_of_three)
        read = rows_read(await generic_plan_as_sent(conn, query, args, analyze=True), "tasks")
        assert read <= 10, f"a page of 3 open tasks read {read} rows of tasks ({filters})"
