"""stage-tracker on a real PostgreSQL, driven event by event, and its API in-process; and the
tracker's real consumer and relay on a real broker (`running_tracker`).

`Harness.feed` runs events through the real handler in a transaction (as the inbox consumer
runs it); what the service emits is read from its outbox (no relay runs there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from funnel_contracts import (
    ActivityRecorded,
    ConsentChanged,
    Envelope,
    EventData,
    LeadCaptured,
    LeadUpdated,
    TouchClicked,
    TouchOpened,
    encode,
    examples,
    parse_event,
)
from funnel_devstack.stack import Stack
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.outbox import OutboxRelay
from stage_tracker.app import MIGRATIONS, create_app
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.moves.consumer import HANDLED, TOPICS, EventHandler, poll_options
from stage_tracker.settings import TrackerSettings

ADMIN_KEY = "tracker-integration-admin-key-0123456789"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def captured(
    lead_id: UUID, funnel_id: str = "digital-sales", at: datetime = T0, **answers: str
) -> LeadCaptured:
    return LeadCaptured(
        lead_id=lead_id,
        submission_id=uuid4(),
        form_id="demo",
        funnel_id=funnel_id,
        email=f"{lead_id.hex[:10]}@example.com",
        captured_at=at,
        qualification=answers,
    )


def activity(lead_id: UUID, kind: str, at: datetime, **properties: Any) -> ActivityRecorded:
    return examples.activity_recorded(
        lead_id=lead_id, activity_type=kind, occurred_at=at, properties=properties
    )


@dataclass
class Harness:
    pool: asyncpg.Pool
    settings: TrackerSettings
    registry: FunnelRegistry = field(default_factory=FunnelRegistry)

    async def feed(self, *events: EventData | Envelope) -> None:
        handler = EventHandler(self.registry, "tracker", "stage-tracker")
        for item in events:
            envelope = item if isinstance(item, Envelope) else Envelope.of(item, source="test")
            event = item if not isinstance(item, Envelope) else None
            async with self.pool.acquire() as conn, conn.transaction():
                await handler(conn, envelope, event or parse_event(envelope.type, envelope.data))

    async def emitted(self, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch("SELECT value, event_type FROM outbox ORDER BY id")
        return [json.loads(r["value"]) for r in rows if event_type in (None, r["event_type"])]

    async def count(self, table: str, lead_id: UUID) -> int:
        query = f"SELECT count(*) FROM {table} WHERE lead_id = $1"  # noqa: S608 - test tables
        return int(await self.pool.fetchval(query, lead_id))

    @contextlib.asynccontextmanager
    async def api(self, key: str = ADMIN_KEY) -> AsyncIterator[httpx.AsyncClient]:
        """The tracker's HTTP API in-process (loops off: the test drives them)."""
        app = create_app(self.settings.model_copy(update={"run_workers": False}))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://tracker.test",
                headers={"Authorization": f"Bearer {key}"} if key else {},
            ) as client,
        ):
            yield client


async def migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, "tracker", MIGRATIONS)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def tracker_harness(
    dsn: str, kafka_bootstrap: str, **settings: Any
) -> AsyncIterator[Harness]:
    await migrate(dsn)
    values: dict[str, Any] = {
        "database_url": dsn,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "admin_api_key": ADMIN_KEY,
        **settings,
    }
    pool = await create_pool(dsn, "tracker", min_size=1, max_size=6)
    try:
        yield Harness(pool, TrackerSettings(**values))
    finally:
        await pool.close()


# ---------------------------------------------------------------- on the real broker


async def tracker_database(stack: Stack) -> str:
    dsn = await stack.postgres.create_database("t")
    await migrate(dsn)
    return dsn


async def produce(stack: Stack, events: list[EventData], source: str = "test-producer") -> None:
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
async def running_tracker(
    stack: Stack, dsn: str, group: str, topics: Sequence[str] = TOPICS
) -> AsyncIterator[asyncpg.Pool]:
    """The tracker's real inbox consumer on its topics, writing into `dsn`, and its relay."""
    pool = await create_pool(dsn, "tracker", min_size=1, max_size=4)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    handler = EventHandler(FunnelRegistry(), "tracker", "stage-tracker")
    consumer = InboxConsumer(
        pool=pool,
        producer=producer,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        topics=list(topics),
        handler=handler,
        handled_types=HANDLED,
        max_attempts=2,
        batch_handler=handler.batch,
        **poll_options(TrackerSettings()),  # as the service takes its polls
    )
    relay = OutboxRelay(pool, producer, dsn=dsn, schema="tracker", poll_seconds=0.5)
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())]
    try:
        yield pool
    finally:
        consumer.stop()
        relay.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await producer.stop()
        await pool.close()


async def until_count(
    pool: asyncpg.Pool, query: str, expected: int, timeout: float = 60, *args: object
) -> None:
    deadline = time.monotonic() + timeout
    while (got := await pool.fetchval(query, *args)) < expected:
        assert time.monotonic() < deadline, f"{query}: {got} of {expected}"
        await asyncio.sleep(0.1)


def journeys(lead: UUID, i: int, t: datetime) -> list[list[EventData]]:
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
