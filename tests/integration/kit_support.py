"""Helpers for the service-kit integration tests: isolated schemas, topics, polling, reading.

Every test gets its own PostgreSQL schema (kit migrations applied) and its own Kafka topics,
so tests never see each other's rows or records.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError, OutOfOrderSequenceNumber

from funnel_contracts import StageChanged
from funnel_contracts.topics import dead_letter_topic
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool

T = TypeVar("T")
PARTITIONS = 3


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `probe` until `done(result)`; fail the test with the last result at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {result!r}")
        await asyncio.sleep(interval)


@dataclass
class Db:
    dsn: str
    schema: str
    pool: asyncpg.Pool

    async def count(self, table: str, where: str = "true", *args: Any) -> int:
        value = await self.pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *args)  # noqa: S608
        return int(value)


@contextlib.asynccontextmanager
async def isolated_db(dsn: str) -> AsyncIterator[Db]:
    """A fresh schema with the kit migrations applied (no service migrations), and a pool."""
    schema = unique("it")
    with tempfile.TemporaryDirectory() as empty:
        conn = await asyncpg.connect(dsn)
        try:
            await migrations.apply(conn, schema, Path(empty))
        finally:
            await conn.close()
    pool = await create_pool(dsn, schema, min_size=1, max_size=6)
    try:
        yield Db(dsn, schema, pool)
    finally:
        await pool.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def kafka_admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topics(bootstrap: str, *names: str, with_dlq: bool = True) -> None:
    wanted = [
        t for name in names for t in ((name, dead_letter_topic(name)) if with_dlq else (name,))
    ]
    async with kafka_admin(bootstrap) as admin:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in wanted])

        async def present() -> set[str]:
            return set(await admin.list_topics())

        await eventually(present, lambda got: set(wanted) <= got, what=f"topics {wanted}")


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The high watermark of every partition of `topic` (how many records it holds)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def record_count(bootstrap: str, topic: str) -> int:
    return sum((await end_offsets(bootstrap, topic)).values())


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic`, partition by partition in offset order (no consumer group)."""
    ends = await end_offsets(bootstrap, topic)
    expected = sum(ends.values())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 20
        while len(records) < expected:
            assert time.monotonic() < deadline, f"read {len(records)} of {expected} records"
            batch = await consumer.getmany(timeout_ms=200)
            for tp_records in batch.values():
                records.extend(tp_records)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


async def committed_offsets(bootstrap: str, group_id: str) -> dict[int, int]:
    """The consumer group's committed offset per partition (absent: nothing committed).

    On a new broker the group coordinator appears with the offsets topic, a moment after the
    first consumer joins: until then nothing is committed."""
    async with kafka_admin(bootstrap) as admin:
        try:
            offsets = await admin.list_consumer_group_offsets(group_id)
        except GroupCoordinatorNotAvailableError:
            return {}
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def stage_changed(lead_id: uuid.UUID, position: int) -> StageChanged:
    return StageChanged(
        lead_id=lead_id,
        funnel_id="it-funnel",
        funnel_version=1,
        from_stage=None if position == 0 else f"stage-{position - 1}",
        to_stage=f"stage-{position}",
        to_stage_position=position,
        reason="integration test",
        changed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def stop_task(
    stop: Callable[[], None], task: asyncio.Task[None], timeout: float = 15
) -> None:
    """Ask a loop to stop and wait for it; a loop that does not stop fails the test."""
    stop()
    try:
        await asyncio.wait_for(task, timeout)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise AssertionError("the loop did not stop within its drain time") from None


class SessionLostProducer(AIOKafkaProducer):
    """A real producer whose idempotent session is gone, as after aio-libs/aiokafka#1017:
    every send fails with the error its dead sender task keeps raising."""

    sends = 0

    async def send(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.sends += 1
        raise OutOfOrderSequenceNumber()


class CrashingPool:
    """The real pool, except that the next `acquire` after `crash_next()` raises an error no
    retry covers (as asyncpg's InternalClientError did once after a database restart)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._crash = False
        self.crashes = 0

    def crash_next(self) -> None:
        self._crash = True

    def acquire(self) -> Any:
        if self._crash:
            self._crash = False
            self.crashes += 1
            raise RuntimeError("injected: the loop crashes")
        return self._pool.acquire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)
