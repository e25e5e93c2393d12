"""Kafka clients configured the one way this project uses them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import OutOfOrderSequenceNumber, ProducerFenced, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from funnel_contracts.topics import all_topics_with_dead_letters
from funnel_servicekit.settings import KafkaClientSettings

log = logging.getLogger(__name__)

# Errors after which an aiokafka producer never sends again: its sender task has ended (e.g.
# sequence numbers out of step after the broker was away while batches were in flight). Only a
# new producer, with a new producer id, can send again.
FATAL_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (OutOfOrderSequenceNumber, ProducerFenced)
ProducerFactory = Callable[[], AIOKafkaProducer]


def client_security(settings: KafkaClientSettings | None = None) -> dict[str, Any]:
    """The keyword arguments every aiokafka client of the kit is made with: plaintext, or TLS
    (with the CA of FUNNEL_KAFKA_SSL_CAFILE) and SASL/SCRAM credentials, as the
    FUNNEL_KAFKA_* settings say (read from the environment when none are given)."""
    settings = settings or KafkaClientSettings()
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL_"):
        # Checked here, when a client is made: the migrations run with the same settings and
        # never connect to Kafka.
        if not (settings.kafka_sasl_username and settings.kafka_sasl_password):
            raise ValueError(
                "FUNNEL_KAFKA_SASL_USERNAME and FUNNEL_KAFKA_SASL_PASSWORD are required with "
                f"FUNNEL_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}"
            )
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def consumer_tuning(settings: KafkaClientSettings | None = None) -> dict[str, Any]:
    """The fetch settings every consumer of the kit is made with (FUNNEL_KAFKA_FETCH_*)."""
    settings = settings or KafkaClientSettings()
    return {
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "fetch_min_bytes": settings.kafka_fetch_min_bytes,
    }


def create_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer: acks from all replicas, no duplicates on retry, order kept."""
    settings = KafkaClientSettings()
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        request_timeout_ms=30000,
        **client_security(settings),
    )


async def ensure_topics(
    bootstrap_servers: str, partitions: int = 6, replication_factor: int = 1
) -> list[str]:
    """Create every funnel topic and its dead-letter topic that does not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_security())
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


class RenewableProducer:
    """The producer a loop publishes with, replaced by a new one from `factory` when its
    idempotent session is lost for good (FATAL_PRODUCER_ERRORS).

    The producer it was given may serve others too and is never stopped here; the ones it
    made itself are stopped when replaced and by `close`. Without a factory, `renew` does
    nothing: the caller keeps failing loudly and keeps what it could not send.
    """

    def __init__(self, producer: AIOKafkaProducer, factory: ProducerFactory | None) -> None:
        self.current = producer
        self.factory = factory
        self._given = producer
        self._owned = False

    async def renew(self) -> bool:
        """Swap in a started new producer; False when there is none (yet)."""
        if self.factory is None:
            return False
        fresh = self.factory()
        try:
            await fresh.start()
        except Exception:
            log.exception("a new producer could not start; trying again later")
            with contextlib.suppress(Exception):
                await fresh.stop()
            return False
        old, owned = self.current, self._owned
        self.current, self._owned = fresh, True
        if owned:
            with contextlib.suppress(Exception):
                await old.stop()
        return True

    async def close(self) -> None:
        """Stop the producer this made itself, if any, and go back to the one it was given
        (a loop that runs again after a crash must not publish with a stopped producer)."""
        if self._owned:
            with contextlib.suppress(Exception):
                await self.current.stop()
        self.current, self._owned = self._given, False
