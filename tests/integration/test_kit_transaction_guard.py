"""The guard against network calls inside a database transaction, on the real PostgreSQL and
Kafka: an HTTP request or a Kafka send while the task has a transaction open raises and is
recorded (tests/conftest.py arms it for every test and fails a test that leaves a record);
before, after, and in another task it passes."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from funnel_devstack.ports import free_port
from funnel_devstack.stack import Stack
from funnel_servicekit import transaction_guard
from funnel_servicekit.kafka import create_producer
from funnel_servicekit.outbox import OutboxRelay
from funnel_servicekit.unit_of_work import Outbox, Transactions
from tests.integration.kit_support import (
    Db,
    create_topics,
    isolated_db,
    record_count,
    stage_changed,
    unique,
)

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def http_server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def db(infra: Stack) -> AsyncIterator[Db]:
    async with isolated_db(infra.postgres.dsn) as db:
        yield db


def _taken() -> list[str]:
    """The violations recorded so far, cleared (so the autouse check passes on what the test
    caused on purpose)."""
    found = transaction_guard.violations()
    transaction_guard.clear()
    return found


async def test_an_http_call_inside_a_transaction_raises_and_is_recorded(db: Db) -> None:
    tx = Transactions(db.pool, Outbox(db.schema, "it-guard"))
    with http_server() as (url, seen):
        async with httpx.AsyncClient(base_url=url) as client:
            before = await client.get("/before")

            async def inside_a_unit_of_work() -> None:
                async with tx() as uow:
                    await uow.conn.execute("SELECT 1")
                    await client.get("/inside")

            async def after_a_savepoint_ended() -> None:
                async with db.pool.acquire() as conn, conn.transaction():
                    async with conn.transaction():  # a savepoint ended: still inside
                        pass
                    await client.get("/after-savepoint")

            with pytest.raises(transaction_guard.NetworkCallInTransaction):
                await inside_a_unit_of_work()
            with pytest.raises(transaction_guard.NetworkCallInTransaction):
                await after_a_savepoint_ended()
            after = await client.get("/after")
            # Another task's transaction does not mark this one.
            release = asyncio.Event()

            async def holds_a_transaction() -> None:
                async with db.pool.acquire() as conn, conn.transaction():
                    await release.wait()

            holder = asyncio.create_task(holds_a_transaction())
            await asyncio.sleep(0.1)
            beside = await client.get("/beside")
            release.set()
            await holder

    assert (before.status_code, after.status_code, beside.status_code) == (204, 204, 204)
    assert seen == ["/before", "/after", "/beside"]  # the guarded calls never left
    found = _taken()
    assert len(found) == 2
    assert all(f.startswith("HTTP request (httpx)") for f in found)
    assert not transaction_guard.in_transaction()


async def test_a_kafka_send_inside_a_transaction_raises_and_sends_nothing(
    infra: Stack, db: Db
) -> None:
    topic = unique("it.guard")
    await create_topics(infra.kafka_bootstrap, topic, with_dlq=False)
    producer = create_producer(infra.kafka_bootstrap, "it-guard")
    await producer.start()
    try:
        with pytest.raises(transaction_guard.NetworkCallInTransaction):
            async with db.pool.acquire() as conn, conn.transaction():
                await producer.send_and_wait(topic, b"inside")
        await producer.send_and_wait(topic, b"outside")
    finally:
        await producer.stop()

    assert await record_count(infra.kafka_bootstrap, topic) == 1
    [found] = _taken()
    assert found.startswith("Kafka send (aiokafka)")


async def test_the_outbox_relay_publishes_with_no_transaction_open(infra: Stack, db: Db) -> None:
    """The relay once sent while holding its lock in a transaction; now it records nothing."""
    topic = unique("it.guard-relay")
    await create_topics(infra.kafka_bootstrap, topic, with_dlq=False)
    tx = Transactions(db.pool, Outbox(db.schema, "it-guard"))
    async with tx() as uow:
        for position in range(5):
            await uow.emit(stage_changed(uuid.uuid4(), position), topic=topic)
    producer = create_producer(infra.kafka_bootstrap, "it-guard-relay")
    await producer.start()
    relay = OutboxRelay(db.pool, producer, dsn=db.dsn, schema=db.schema)
    try:
        published = await relay.publish_batch()
    finally:
        await producer.stop()

    assert published == 5
    assert await db.count("outbox") == 0
    assert await record_count(infra.kafka_bootstrap, topic) == 5
    assert transaction_guard.violations() == []
    # The relay's session lock went with the batch: another relay can take it at once.
    async with db.pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtext($1))", f"outbox:{db.schema}"
        )
        await conn.execute("SELECT pg_advisory_unlock_all()")


async def test_a_transaction_lost_with_its_connection_leaves_no_mark(db: Db) -> None:
    """PostgreSQL gone mid-transaction (asyncpg raises before it commits or rolls back): the
    task is not left marked, so what it sends afterwards (a dead letter) is no violation."""

    async def lose_the_connection() -> None:
        conn = await asyncpg.connect(db.dsn)
        async with conn.transaction():
            conn.terminate()

    with http_server() as (url, seen):
        async with httpx.AsyncClient(base_url=url) as client:
            with pytest.raises(asyncpg.InterfaceError):
                await lose_the_connection()
            after = await client.get("/after-the-loss")

    assert after.status_code == 204
    assert seen == ["/after-the-loss"]
    assert not transaction_guard.in_transaction()
    assert transaction_guard.violations() == []
