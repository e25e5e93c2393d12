"""The tracker's real consumer on real topics: dead letters, and a replay that rebuilds exactly.

Events are produced through the contracts' encode() onto the contract topics of a private
broker, as lead-intake and the notifier will produce them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from funnel_contracts import (
    ConsentChanged,
    Envelope,
    EventData,
    LeadUpdated,
    TouchClicked,
    TouchOpened,
    encode,
)
from funnel_contracts.topics import LEAD_EVENTS, dead_letter_topic
from funnel_devstack.stack import Stack
from funnel_servicekit.db import create_pool
from funnel_servicekit.inbox import InboxConsumer
from stage_tracker.consumer import HANDLED, TOPICS, EventHandler
from stage_tracker.funnel_registry import FunnelRegistry
from stage_tracker.replay import replay
from tests.integration.tracker_harness import activity, captured, migrate

pytestmark = pytest.mark.integration


async def _database(stack: Stack) -> str:
    name = f"t_{uuid4().hex[:12]}"
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    dsn = stack.postgres.dsn.rsplit("/", 1)[0] + f"/{name}"
    await migrate(dsn)
    return dsn


async def _produce(stack: Stack, events: list[EventData], source: str = "test-producer") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            record = encode(Envelope.of(event, source=source))
            await producer.send_and_wait(
                event.topic, key=record.key, value=record.value, headers=record.headers
            )
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running_tracker(stack: Stack, dsn: str, group: str) -> AsyncIterator[asyncpg.Pool]:
    """The tracker's real inbox consumer on the three topics, writing into `dsn`."""
    pool = await create_pool(dsn, "tracker", min_size=1, max_size=4)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    consumer = InboxConsumer(
        pool=pool,
        producer=producer,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        topics=list(TOPICS),
        handler=EventHandler(FunnelRegistry(), "tracker", "stage-tracker"),
        handled_types=HANDLED,
        max_attempts=2,
    )
    task = asyncio.create_task(consumer.run())
    try:
        yield pool
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        await pool.close()


async def _until(pool: asyncpg.Pool, query: str, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (got := await pool.fetchval(query)) < expected:
        assert time.monotonic() < deadline, f"{query}: {got} of {expected}"
        await asyncio.sleep(0.1)


async def test_an_unknown_funnel_goes_to_the_dead_letter_topic_and_the_rest_moves_on(
    module_infra: Stack,
) -> None:
    dsn = await _database(module_infra)
    bad, good = uuid4(), uuid4()
    await _produce(module_infra, [captured(bad, funnel_id="no-such-funnel"), captured(good)])
    async with running_tracker(module_infra, dsn, "tracker-dlq") as pool:
        await _until(pool, "SELECT count(*) FROM lead_stages", 1)
        await _until(pool, "SELECT count(*) FROM dead_letters", 1)
        assert await pool.fetchval("SELECT lead_id FROM lead_stages") == good
    consumer = AIOKafkaConsumer(
        dead_letter_topic(LEAD_EVENTS),
        bootstrap_servers=module_infra.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    headers = dict(record.headers)
    assert record.key == str(bad).encode()
    assert b"unknown funnel 'no-such-funnel'" in headers["dlq_error"]
    assert headers["dlq_consumer_group"] == b"tracker-dlq"


def _journeys(lead: UUID, i: int, t: datetime) -> list[list[EventData]]:
    """Rounds of one lead's events across the three topics, each round later in time."""
    minute = timedelta(minutes=1)
    funnel = ("digital-sales", "subscription", "b2b-sales-cycle")[i % 3]
    touch = uuid4()
    rounds: list[list[EventData]] = [
        [activity(lead, "page_view", t - minute)],  # before the capture, on another topic
        [captured(lead, funnel_id=funnel, at=t)],
        [TouchOpened(lead_id=lead, touch_id=touch, opened_at=t + minute)],
        [
            TouchClicked(
                lead_id=lead, touch_id=touch, url="https://x.test", clicked_at=t + 2 * minute
            )
        ],
        [activity(lead, "pricing_viewed", t + 3 * minute)],
        [
            LeadUpdated(
                lead_id=lead,
                qualification={"budget": "yes", "need": "yes", "authority": "yes", "timing": "now"},
                updated_at=t + 4 * minute,
            )
        ],
    ]
    if i % 4 == 0:
        rounds.append(
            [
                ConsentChanged(
                    lead_id=lead,
                    category="marketing",
                    granted=False,
                    source="one-click",
                    changed_at=t + 5 * minute,
                )
            ]
        )
        rounds.append([activity(lead, "purchase_completed", t + 6 * minute)])
    elif i % 4 == 1:
        rounds.append([activity(lead, "purchase_completed", t + 5 * minute)])
        rounds.append([activity(lead, "renewal_due", t + 30 * minute)])
        rounds.append([activity(lead, "subscription_renewed", t + 31 * minute)])
        rounds.append([activity(lead, "call_logged", t + 2 * minute, outcome="objection")])  # late
    else:
        rounds.append([activity(lead, "call_logged", t + 5 * minute, outcome="objection")])
        rounds.append([activity(lead, "checkout_started", t + 6 * minute)])
    return rounds


STATE = """SELECT lead_id, funnel_id, funnel_version, stage, entered_at, previous_stage, fit_score,
                  engagement_score, score, temperature, answers::text, last_activity_at, as_of,
                  timer_due_at
           FROM lead_stages ORDER BY lead_id"""
HISTORY = """SELECT lead_id, funnel_id, funnel_version, from_stage, to_stage, to_position, reason,
                    cause_event_id, cause_event_type, occurred_at, actor
             FROM transitions ORDER BY lead_id, id"""


async def test_replaying_the_topics_into_an_empty_database_rebuilds_the_same_states(
    module_infra: Stack,
) -> None:
    leads = [uuid4() for _ in range(24)]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    plans = [_journeys(lead, i, t0 + timedelta(seconds=i)) for i, lead in enumerate(leads)]
    live_dsn = await _database(module_infra)
    async with running_tracker(module_infra, live_dsn, "tracker-live") as pool:
        produced = 0
        for r in range(max(len(p) for p in plans)):
            batch = [e for plan in plans if r < len(plan) for e in plan[r]]
            await _produce(module_infra, batch, source="replay-test")
            produced += len(batch)
            # The next round only once this one is in: live, people act seconds apart.
            await _until(pool, "SELECT count(*) FROM inbox WHERE source = 'replay-test'", produced)
        consumed = await pool.fetchval("SELECT count(*) FROM inbox")
        live_state = [tuple(r) for r in await pool.fetch(STATE)]
        live_history = [tuple(r) for r in await pool.fetch(HISTORY)]

    assert set(leads) <= {r[0] for r in live_state}
    stages = {r[3] for r in live_state}
    assert {"action", "repurchase", "recycled"} & stages or "lost" in stages or len(stages) > 2
    assert len(live_history) > 3 * len(leads)

    rebuilt_dsn = await _database(module_infra)
    pool = await create_pool(rebuilt_dsn, "tracker", min_size=1, max_size=2)
    try:
        handler = EventHandler(FunnelRegistry(), "tracker", "stage-tracker")
        counts = await replay(pool, module_infra.kafka_bootstrap, TOPICS, handler, group_id=None)
        assert counts["processed"] == consumed
        rebuilt_state = [tuple(r) for r in await pool.fetch(STATE)]
        rebuilt_history = [tuple(r) for r in await pool.fetch(HISTORY)]
    finally:
        await pool.close()
    assert rebuilt_state == live_state
    assert rebuilt_history == live_history
