"""A real Kafka broker: topic creation, idempotent produce, consume back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from funnel_devstack.kafka import KafkaBroker, new_cluster_id
from funnel_devstack.ports import free_port
from funnel_devstack.processes import is_alive


def test_cluster_id_shape() -> None:
    for _ in range(50):
        cid = new_cluster_id()
        assert len(cid) == 22
        assert not cid.startswith("-")
        assert "=" not in cid


@pytest.fixture
async def broker(tmp_path: Path, kafka_libs: Path) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port(), kafka_libs)
    broker.start()
    try:
        await broker.wait_ready()
        yield broker
    finally:
        broker.stop()


@pytest.mark.integration
async def test_produce_idempotently_and_consume(broker: KafkaBroker) -> None:
    topic = f"devstack-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        # The broker answers the creation before its metadata lists the partitions: ask
        # again for a few seconds rather than read a first, empty answer.
        deadline = time.monotonic() + 10
        described = await admin.describe_topics([topic])
        while not described[0]["partitions"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            described = await admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 3
    finally:
        await admin.close()

    value = b"\x00\xff payload \xe2\x82\xac"
    headers = [("event-type", b"lead.created"), ("trace", b"\x01\x02")]
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value=value, key=b"lead-1", headers=headers)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()

    assert record.value == value
    assert record.key == b"lead-1"
    assert list(record.headers) == headers
    assert (record.partition, record.offset) == (sent.partition, sent.offset)


@pytest.mark.integration
async def test_stop_ends_the_process(tmp_path: Path, kafka_libs: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port(), kafka_libs)
    broker.start()
    pid = broker.pid
    assert pid is not None
    try:
        await broker.wait_ready()
    finally:
        broker.stop()
    assert not is_alive(pid)
    assert "Kafka Server started" in (tmp_path / "kafka" / "kafka.log").read_text()
