"""The statements of the notifier's waves (decision 0090) read by index, however much the
tables grew after their plan was made.

The services keep one generic plan per statement and connection (decision 0083), made at its
first call: on a fresh deployment, or in the capacity bench, that is while `touches` and
`lead_state` are nearly empty, and until autovacuum analyzes them the plan stays. A wave's
statement joins many leads to those tables; planned on empty tables, PostgreSQL read every
scheduled touch (through the due-time index) and every lead's state on each call once they
had grown: 73 ms a call in the bench at 100 leads/s. Here each statement is planned on empty
tables, 30,000 other leads' scheduled touches and states are added without an ANALYZE, and
the same statement then reads a few dozen buffers (a scan would read hundreds), as
PostgreSQL's own `auto_explain` reports.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest

from funnel_devstack.stack import Stack
from funnel_servicekit.db import create_pool
from notifier.people import store as people
from notifier.touches import store
from tests.integration.notifier_harness import Harness, notifier_harness

pytestmark = pytest.mark.integration

OTHERS = 30_000
LEADS = 20


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap) as harness:
        yield harness


async def _grow(conn: asyncpg.Connection) -> None:
    """Other leads' scheduled touches (each needing a stage) and states; no ANALYZE."""
    await conn.execute(
        """INSERT INTO touches (id, lead_id, playbook, channel, template, cause_event_id,
               due_at, first_due_at, dedupe_key, status, requires_stage, cancel_on)
           SELECT gen_random_uuid(), gen_random_uuid(), 'nurture-1', 'email', 'nurture-1',
               'cause', now() + interval '1 day', now() + interval '1 day', 'k',
               'scheduled', 'interest', '{purchase_completed}'
           FROM generate_series(1, $1)""",
        OTHERS,
    )
    await conn.execute(
        """INSERT INTO lead_state (lead_id, funnel_id, stage)
           SELECT gen_random_uuid(), 'digital-sales', 'interest' FROM generate_series(1, $1)""",
        OTHERS,
    )


async def test_a_waves_statements_read_by_index_after_the_tables_grew(h: Harness) -> None:
    pool = await create_pool(h.settings.database_url, "notifier", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            leads = [uuid4() for _ in range(LEADS)]
            now = datetime.now(UTC)
            moves = [store.Move(lead, "digital-sales", "awareness", now) for lead in leads]
            activities = [store.Activity(lead, "purchase_completed", now) for lead in leads]
            scores = [people.NewScore(lead, "warm", 30.0, now) for lead in leads]

            async def wave() -> None:
                await store.enter_stages(conn, moves, [])
                await store.record_activities(conn, activities)
                await people.scores(conn, scores)

            await wave()  # planned now, on empty tables, and kept (generic plans)
            await _grow(conn)
            await conn.execute("LOAD 'auto_explain'")
            await conn.execute(
                "SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;"
                " SET auto_explain.log_buffers = on; SET client_min_messages = log"
            )
            plans: list[str] = []

            def heard(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
                plans.append(message.message)

            conn.add_log_listener(heard)
            await wave()
            await asyncio.sleep(0.2)  # the log messages arrive after each statement
            conn.remove_log_listener(heard)
    finally:
        await pool.close()

    waves = [p for p in plans if "lead_state" in p or "touches" in p]
    assert len(waves) == 3, plans
    for plan in waves:
        first = re.search(r"Buffers: shared hit=(\d+)", plan)
        assert first is not None, plan
        assert int(first.group(1)) < 300, plan  # a scan of either table reads 700 or more
        assert "Seq Scan on lead_state" not in plan
        assert "touches_due_idx" not in plan
    # The wave did its work: each lead's state written once, with its stage and score.
    rows = await h.pool.fetch(
        "SELECT stage, temperature FROM lead_state WHERE lead_id = ANY($1)", leads
    )
    assert sorted(tuple(r) for r in rows) == [("awareness", "warm")] * LEADS
