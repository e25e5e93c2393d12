"""What the consumer benchmarks share: the data set onto a broker, the bare-consumer baseline,
and a fresh migrated database per timed run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from funnel_contracts import Envelope, EventData, encode
from funnel_devstack.stack import Stack
from funnel_servicekit import migrations


async def produce(bootstrap: str, events: list[EventData], *, traced: bool = False) -> None:
    """Every event onto its contract topic, as the services' outboxes would (`traced`: each
    with a W3C traceparent of its own, as their producer spans give it, sampled or not)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for event in events:
            trace = {"traceparent": f"00-{uuid4().hex}-{uuid4().hex[:16]}-00"} if traced else {}
            record = encode(Envelope.of(event, source="bench", trace=trace))
            futures.append(
                await producer.send(
                    event.topic, key=record.key, value=record.value, headers=record.headers
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def bare_consumer(bootstrap: str, topics: Sequence[str], total: int) -> float:
    """Events per second of a consumer that reads every record and does nothing with it."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=200,  # as the InboxConsumer
    )
    await consumer.start()
    try:
        # Timed from the first record on, as the services are: joining the group is not reading.
        seen, started = 0, 0.0
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                if not seen:
                    started = time.perf_counter()
                seen += len(records)
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def fresh_database(stack: Stack, schema: str, service_migrations: Path) -> str:
    """A new database on the stack's server with the service's schema migrated; its DSN."""
    dsn = await stack.postgres.create_database("bench")
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, schema, service_migrations)
    finally:
        await conn.close()
    return dsn
