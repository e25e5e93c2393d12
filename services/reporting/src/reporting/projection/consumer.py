"""reporting's consumer: every funnel topic into the projection, live and in a rebuild.

A partition batch goes to `project` at once; a record processed on its own (a batch that held
a poison record) goes to the same `project` as a batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import asyncpg
from aiokafka import AIOKafkaProducer

from funnel_contracts import Envelope, EventData
from funnel_contracts.topics import ALL_TOPICS
from funnel_servicekit.inbox import BatchHandler, Delivery, Handler, InboxConsumer, consume_span
from funnel_servicekit.kafka import ProducerFactory
from funnel_servicekit.runtime import Worker
from funnel_servicekit.telemetry import spans_recorded
from funnel_servicekit.unit_of_work import Outbox, UnitOfWork
from reporting.projection.service import PROJECTED, project
from reporting.runtime import ReportingRuntime
from reporting.settings import ReportingSettings

HANDLED = tuple(model.event_type for model in PROJECTED)


def handlers(outbox: Outbox) -> tuple[Handler, BatchHandler]:
    """The inbox's handlers, each a call of `project` in the inbox's transaction."""

    async def handle(conn: asyncpg.Connection, envelope: Envelope, event: EventData) -> None:
        # The kit already holds this record's consumer span.
        await project(UnitOfWork(conn, outbox), [event])

    async def handle_batch(conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        def scope(i: int) -> AbstractContextManager[object]:
            # One consumer span per event, so each event's trace shows where it was projected.
            return consume_span(deliveries[i].topic, deliveries[i].envelope)

        events = [d.event for d in deliveries]
        if spans_recorded():
            await project(UnitOfWork(conn, outbox), events, scope)
        else:
            # No span would be recorded (no exporter): none is made. The projection sends
            # nothing on, so no event's trace has to be carried further.
            await project(UnitOfWork(conn, outbox), events)

    return handle, handle_batch


# The handlers on the service's default schema, for tools that drive them directly (the
# benches); the service and the rebuild build theirs for the schema they write to.
handle, handle_batch = handlers(
    Outbox(
        schema=ReportingSettings.model_fields["db_schema"].default,
        source=ReportingSettings.model_fields["service_name"].default,
    )
)


def projection_consumer(
    settings: ReportingSettings,
    *,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    group_id: str,
    outbox: Outbox,
    producer_factory: ProducerFactory | None = None,
) -> InboxConsumer:
    """Every funnel topic into `project`, exactly once per event, under `group_id`."""
    handle_one, handle_many = handlers(outbox)
    return InboxConsumer(
        pool=pool,
        producer=producer,
        producer_factory=producer_factory,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        topics=ALL_TOPICS,
        handler=handle_one,
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
        batch_handler=handle_many,  # a poll's events at once; `handle_one` on a poison record
        max_poll_records=settings.consumer_max_poll_records,
        # One `project` call per poll, every partition's events in order: its lead states,
        # writes and timeline once per poll rather than once per partition (decision 0076).
        batch_per_poll=True,
    )


def workers(runtime: ReportingRuntime) -> list[Worker]:
    consumer = projection_consumer(
        runtime.settings,
        pool=runtime.pool,
        producer=runtime.producer,
        producer_factory=runtime.producer_factory,
        group_id=runtime.settings.service_name,
        outbox=runtime.outbox,
    )
    return [Worker("projection-consumer", consumer.run, consumer.stop)]
