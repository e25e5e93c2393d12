"""Kafka clients configured the one way this project uses them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from funnel_contracts.topics import all_topics_with_dead_letters

log = logging.getLogger(__name__)


def create_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer: acks from all replicas, no duplicates on retry, order kept."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30000,
    )


async def ensure_topics(
    bootstrap_servers: str, partitions: int = 6, replication_factor: int = 1
) -> list[str]:
    """Create every funnel topic and its dead-letter topic that does not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in all_topics_with_dead_letters() if t not in existing]
        if wanted:
            # Another process may race us to it; the topics exist either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, partitions, replication_factor) for t in wanted]
                )
        return wanted
    finally:
        await admin.close()


async def broker_reachable(producer: AIOKafkaProducer, wait_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request within `wait_s` seconds."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), wait_s)
        return True
    except Exception:  # any failure means "not ready"; the reason is in the broker logs
        return False
