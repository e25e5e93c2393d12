"""The transactional outbox: write events with the state change, publish them afterwards.

`enqueue` runs inside the caller's transaction. `OutboxRelay` publishes rows in id order with
the idempotent producer, in batches, woken by NOTIFY with a slow poll as the fallback, and
deletes them once the broker has acknowledged them. One relay at a time holds the schema's
advisory lock, so per-lead order holds even with several replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from funnel_contracts import Envelope, EventData, encode
from funnel_servicekit import metrics
from funnel_servicekit.db import connect
from funnel_servicekit.telemetry import current_trace_headers

log = logging.getLogger(__name__)


def _channel(schema: str) -> str:
    return f"{schema}_outbox"


async def enqueue(
    conn: asyncpg.Connection,
    schema: str,
    event: EventData,
    *,
    source: str,
    event_id: str | None = None,
    topic: str | None = None,
) -> Envelope:
    """Add an event to the outbox inside the caller's transaction; carries the trace.

    The record goes to the event's own topic unless `topic` names another one.
    """
    envelope = Envelope.of(event, source=source, event_id=event_id)
    envelope = Envelope(**{**envelope.__dict__, "trace": current_trace_headers()})
    record = encode(envelope)
    await conn.execute(
        "INSERT INTO outbox (topic, key, value, headers, event_type) VALUES ($1, $2, $3, $4, $5)",
        topic or event.topic,
        record.key,
        record.value,
        [[k, v.decode()] for k, v in record.headers],
        envelope.type,
    )
    await conn.execute(f"NOTIFY {_channel(schema)}")
    return envelope


class OutboxRelay:
    """Publishes a schema's outbox to Kafka until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        dsn: str,
        schema: str,
        batch_size: int = 200,
        poll_seconds: float = 2.0,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.dsn = dsn
        self.schema = schema
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        listener = await self._listen()
        try:
            while not self._stopping.is_set():
                try:
                    published = await self.publish_batch()
                except Exception:
                    log.exception("outbox publish failed; retrying")
                    published = 0
                    await self._sleep(1.0)
                    listener = await self._relisten(listener)
                if published >= self.batch_size:
                    continue  # more is waiting
                await self._sleep(self.poll_seconds)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _listen(self) -> asyncpg.Connection | None:
        try:
            conn = await connect(self.dsn, self.schema)
            await conn.add_listener(_channel(self.schema), lambda *_: self._wake.set())
            return conn
        except Exception:
            log.warning("outbox LISTEN unavailable; polling only until it comes back")
            return None

    async def _relisten(self, listener: asyncpg.Connection | None) -> asyncpg.Connection | None:
        if listener is not None and not listener.is_closed():
            return listener
        return await self._listen()

    async def publish_batch(self) -> int:
        """Publish one batch in id order; returns how many rows went out."""
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext($1))", f"outbox:{self.schema}"
            )
            if not locked:
                return 0  # another replica's relay is publishing
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT $1",
                self.batch_size,
            )
            if not rows:
                await self._record_backlog(conn)
                return 0
            futures = [
                await self.producer.send(
                    row["topic"],
                    value=row["value"],
                    key=row["key"],
                    headers=[(k, v.encode()) for k, v in row["headers"]],
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
            for row in rows:
                metrics.OUTBOX_PUBLISHED.labels(row["topic"]).inc()
            await self._record_backlog(conn)
            return len(rows)

    async def _record_backlog(self, conn: asyncpg.Connection) -> None:
        stats: Any = await conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age FROM outbox"
        )
        metrics.OUTBOX_BACKLOG.set(stats["n"])
        metrics.OUTBOX_OLDEST_AGE.set(float(stats["age"] or 0))
