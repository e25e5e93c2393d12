"""The notifier's consumer lets the broker hold a fetch for more events
(FUNNEL_CONSUMER_BATCH_WAIT_MS, decision 0073): events that trickle in a few tens of
milliseconds apart are taken in a few polls, a transaction each, not one poll per event. The
real consumer on a private Kafka and PostgreSQL; a poll's transaction is told by its inbox
rows' `processed_at` (the transaction's time)."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from funnel_contracts import Envelope, EventData, encode
from funnel_devstack.stack import Stack
from tests.integration.notifier_harness import Harness, captured, notifier_harness

pytestmark = pytest.mark.integration

EVENTS = 12
APART_SECONDS = 0.04  # 25 events a second: about what 20 leads a second bring


@pytest.fixture
async def dsn(module_infra: Stack) -> str:
    return await module_infra.postgres.create_database("nb")


async def _send(producer: AIOKafkaProducer, event: EventData) -> None:
    record = encode(Envelope.of(event, source="test"))
    await producer.send_and_wait(event.topic, record.value, key=record.key, headers=record.headers)


async def _contacts(h: Harness, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await h.pool.fetchval("SELECT count(*) FROM contacts") < n:
        assert time.monotonic() < deadline, "the consumer did not take the events"
        await asyncio.sleep(0.05)


async def test_events_a_few_ms_apart_share_a_few_polls(module_infra: Stack, dsn: str) -> None:
    bootstrap = module_infra.kafka_bootstrap
    async with notifier_harness(dsn, bootstrap, consumer_batch_wait_ms=400) as h:
        from notifier.app import create_app

        app = create_app(h.settings)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            async with app.router.lifespan_context(app):
                await _send(producer, captured(uuid4()))  # the consumer is up and assigned
                await _contacts(h, 1)
                warm = await h.pool.fetchval("SELECT count(*) FROM inbox")
                for _ in range(EVENTS):
                    await _send(producer, captured(uuid4()))
                    await asyncio.sleep(APART_SECONDS)
                await _contacts(h, 1 + EVENTS)
        finally:
            await producer.stop()
        polls = await h.pool.fetchval(
            """SELECT count(DISTINCT processed_at) FROM (
                   SELECT processed_at FROM inbox ORDER BY processed_at OFFSET $1) AS fresh""",
            warm,
        )
        total = await h.pool.fetchval("SELECT count(*) FROM inbox")
    assert total == 1 + EVENTS  # each event once
    # About 0.5 s of events in polls held up to 0.4 s each: two or three (one per event
    # without the wait).
    assert polls <= 4, polls
