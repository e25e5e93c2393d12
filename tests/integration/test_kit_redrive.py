"""Redriving dead letters: republished to their topic once, without the dlq_* headers."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from funnel_contracts.topics import dead_letter_topic
from funnel_devstack.stack import Stack
from funnel_servicekit.redrive import redrive
from tests.integration.kit_support import create_topics, read_all, record_count, unique

pytestmark = pytest.mark.integration


async def test_redrive_republishes_each_dead_letter_once_for_the_chosen_group(infra: Stack) -> None:
    topic = unique("redrive")
    await create_topics(infra.kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for i, group in enumerate(["stage-tracker", "notifier", "stage-tracker"]):
            await producer.send_and_wait(
                dead_letter_topic(topic),
                key=f"lead-{i}".encode(),
                value=f"v{i}".encode(),
                headers=[
                    ("ce_id", f"id-{i}".encode()),
                    ("dlq_error", b"ValueError: boom"),
                    ("dlq_consumer_group", group.encode()),
                    ("dlq_topic", topic.encode()),
                ],
            )
    finally:
        await producer.stop()

    dry = await redrive(infra.kafka_bootstrap, topic, only_group="stage-tracker", dry_run=True)
    assert (dry.read, dry.republished, dry.skipped_other_group) == (3, 2, 1)
    assert await record_count(infra.kafka_bootstrap, topic) == 0

    first = await redrive(infra.kafka_bootstrap, topic, only_group="stage-tracker")
    second = await redrive(infra.kafka_bootstrap, topic, only_group="stage-tracker")

    assert (first.read, first.republished, first.skipped_other_group) == (3, 2, 1)
    assert (second.read, second.republished) == (0, 0)  # progress was committed
    records = await read_all(infra.kafka_bootstrap, topic)
    assert sorted(r.value for r in records) == [b"v0", b"v2"]
    for r in records:
        names = [k for k, _ in r.headers]
        assert names == ["ce_id"]  # the original headers, no dlq_* left
