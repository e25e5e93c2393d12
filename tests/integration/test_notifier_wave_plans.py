"""The statements of the notifier's waves (decision 0090) read by index, however much the
tables grew since the connection's first call.

The services keep one generic plan per statement and connection (decision 0083), made at its
first call: on a fresh deployment, or in the capacity bench, that is while `touches` and
`lead_state` are nearly empty, and it stays until autovacuum analyzes them. A wave's
statements join many leads to those tables; with such a plan PostgreSQL read every
scheduled touch (through the due-time index) on each call once they had grown: 16-20 ms a
call in the bench at 100 leads/s, 73 ms on average in one run. So the consumer's
transactions plan each statement for its own call. Here a first poll runs on empty tables,
30,000 other leads' scheduled touches and states are added without an ANALYZE, and the next
poll's wave statements read a few dozen buffers each (a scan reads hundreds), as
PostgreSQL's own `auto_explain` reports; a control run with generic plans shows the scan.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest

from funnel_contracts import Envelope
from funnel_devstack.stack import Stack
from funnel_servicekit.db import create_pool
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.unit_of_work import UnitOfWork
from notifier.playbooks.service import PlaybookCache
from notifier.touches import consumer
from notifier.touches.consumer import OUTBOX, _apply_in_waves, handle_batch
from notifier.touches.service import Consuming
from tests.integration.notifier_harness import Harness, a_wave_each, notifier_harness

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


WAVES = ("WITH moved AS", "WITH a AS", "WITH u AS")


async def _wave_plans(h: Harness, *, through_consumer: bool) -> tuple[list[str], list[UUID]]:
    """Each wave statement's plan (auto_explain) in a poll after the tables grew; the first
    poll, on empty tables, went through the same connection."""
    pool = await create_pool(h.settings.database_url, "notifier", min_size=1, max_size=1)
    cache = PlaybookCache()
    try:
        async with pool.acquire() as conn:

            async def poll() -> list[UUID]:
                leads = [uuid4() for _ in range(LEADS)]
                events = a_wave_each(leads, "purchase_completed")
                deliveries = [Delivery(e.topic, Envelope.of(e, source="test"), e) for e in events]
                async with conn.transaction():
                    if through_consumer:
                        await handle_batch(conn, deliveries, playbooks=cache)
                    else:  # the same statements under the connection's generic plans
                        batch = await Consuming.load(UnitOfWork(conn, OUTBOX), leads, cache)
                        await _apply_in_waves(batch, deliveries)
                return leads

            await poll()  # the first call of each statement: on empty tables
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
            leads = await poll()
            await asyncio.sleep(0.2)  # the log messages arrive after each statement
            conn.remove_log_listener(heard)
    finally:
        await pool.close()
    return [p for p in plans if any(w in p for w in WAVES)], leads


def _touches_read(plan: str) -> int:
    """The buffers the plan's update of `touches` read (the touches a wave cancels)."""
    lines = plan.splitlines()
    at = next(i for i, line in enumerate(lines) if "Update on touches" in line)
    found = next(
        m for line in lines[at + 1 :] if (m := re.search(r"Buffers: shared hit=(\d+)", line))
    )
    return int(found.group(1))


async def test_a_waves_statements_read_by_index_after_the_tables_grew(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "spans_recorded", lambda: False)
    waves, leads = await _wave_plans(h, through_consumer=True)
    assert len(waves) == 3, waves
    for plan in waves:
        assert "Seq Scan on lead_state" not in plan, plan
    cancelling = [p for p in waves if "Update on touches" in p]  # stage changes, activities
    assert len(cancelling) == 2, waves
    for plan in cancelling:
        assert _touches_read(plan) < 150, plan  # a scan of the scheduled touches: 400 or more
    # The wave did its work: each lead's state written once, with its stage and score.
    rows = await h.pool.fetch(
        "SELECT stage, temperature FROM lead_state WHERE lead_id = ANY($1)", leads
    )
    assert sorted(tuple(r) for r in rows) == [("awareness", "warm")] * LEADS


async def test_with_the_plans_of_the_first_call_they_read_the_grown_tables(h: Harness) -> None:
    """The control: the same statements under the connection's generic plans (no plan per
    call) read far more, so the test above can tell the two apart."""
    waves, _ = await _wave_plans(h, through_consumer=False)
    cancelling = [p for p in waves if "Update on touches" in p]
    assert len(cancelling) == 2, waves
    assert max(_touches_read(plan) for plan in cancelling) >= 400, waves
