"""The sender's claim costs what is due, not what is scheduled (decision 0085): its one
statement, as `touches.store.lock_due` sends it and planned generically (the plan each
connection keeps), reads ranges of indexes, never every touch scheduled for later nor the
whole contacts table. On a table of 5,000 touches due in the days ahead and a few due now,
it claims exactly the ones it should: scheduled and due with a known contact or a task, and
sends whose lease ran out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest

from notifier.app import MIGRATIONS
from notifier.settings import NotifierSettings
from notifier.touches import store
from tests.integration.plans import generic_plan, migrated, plan_nodes, statements_sent

pytestmark = pytest.mark.integration

LATER = 5000


async def _touch(
    conn: asyncpg.Connection,
    lead: UUID,
    *,
    due: str,
    status: str = "scheduled",
    channel: str = "email",
    lease: str | None = None,
) -> UUID:
    touch = uuid4()
    await conn.execute(
        f"""INSERT INTO touches (id, lead_id, playbook, channel, template, status, due_at,
               first_due_at, lease_until, kind, category)
           VALUES ($1::uuid, $2, 'p-' || $1::uuid::text, $3, 't', $4, now() + interval '{due}',
               now() + interval '{due}', {f"now() + interval '{lease}'" if lease else "NULL"},
               'marketing', 'promo')""",  # noqa: S608 (the test's own constants)
        touch,
        lead,
        channel,
        status,
    )
    return touch


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with migrated(
        fresh_dsn, NotifierSettings(database_url=fresh_dsn), MIGRATIONS
    ) as connection:
        # Every person known, each with a touch due in the next days (a nurture sequence's).
        await connection.execute(
            """WITH people AS (SELECT gen_random_uuid() AS lead FROM generate_series(1, $1::int)),
               known AS (INSERT INTO contacts (lead_id, email) SELECT lead, 'p@example.com'
                         FROM people RETURNING lead_id)
               INSERT INTO touches (id, lead_id, playbook, channel, template, status, due_at,
                   first_due_at, kind, category)
               SELECT gen_random_uuid(), lead_id, 'nurture', 'email', 't', 'scheduled',
                   now() + interval '2 days' + random() * interval '1 day',
                   now() + interval '2 days',
                   'marketing', 'promo'
               FROM known""",
            LATER,
        )
        yield connection


async def _sent(conn: asyncpg.Connection, limit: int) -> str:
    """The one statement lock_due sends."""

    async def claim() -> None:
        async with conn.transaction():
            await store.lock_due(conn, limit)

    [query] = [q for q in await statements_sent(conn, claim) if "FROM touches" in q]
    return query


async def test_the_claim_reads_what_is_due_not_what_is_scheduled_later(
    conn: asyncpg.Connection,
) -> None:
    known = [
        r["lead_id"] for r in await conn.fetch("SELECT lead_id FROM contacts ORDER BY lead_id")
    ]
    due = [await _touch(conn, lead, due="-1 minute") for lead in known[:3]]
    expired = await _touch(conn, known[3], due="-10 minutes", status="sending", lease="-1 second")
    await _touch(conn, known[4], due="-10 minutes", status="sending", lease="5 minutes")
    task = await _touch(conn, uuid4(), due="-1 second", channel="task")  # no contact needed
    await _touch(conn, uuid4(), due="-1 second")  # an email whose person is not known yet
    nearest = await _touch(conn, known[5], due="1 hour")
    await conn.execute("ANALYZE touches; ANALYZE contacts")

    async with conn.transaction():
        batch = await store.lock_due(conn, 50)
        assert {t.id for t in batch.touches} == {*due, expired, task}
        assert batch.next_due_in is not None
        assert 3590 < batch.next_due_in <= 3600
        nearest_due = await conn.fetchval(
            "SELECT extract(epoch FROM due_at - now()) FROM touches WHERE id = $1", nearest
        )
        assert abs(batch.next_due_in - float(nearest_due)) < 1

    query = await _sent(conn, 50)
    nodes = plan_nodes(await generic_plan(conn, query, "int", "50", analyze=True))
    whole = [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"]
    assert set(whole) <= {"playbooks_revision"}, f"a claim must not read {whole} whole"
    passed = sum(n.get("Rows Removed by Filter", 0) for n in nodes)
    assert passed < 20, f"the claim passed over {passed} rows it did not want"
    read = sum(n["Actual Rows"] * n["Actual Loops"] for n in nodes if "Relation Name" in n)
    assert read < 50, f"the claim read {read} rows for 5 due touches"
