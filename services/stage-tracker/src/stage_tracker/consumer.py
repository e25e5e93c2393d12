"""What stage-tracker does with each lead event: decide, store, emit stage.changed."""

from __future__ import annotations

import asyncpg

from funnel_contracts import Envelope, EventData, LeadCaptured, StageChanged
from funnel_contracts.topics import LEAD_EVENTS
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.outbox import enqueue
from funnel_servicekit.runtime import ServiceRuntime, Worker
from stage_tracker import store
from stage_tracker.machine import decide

HANDLED = (LeadCaptured.event_type,)


async def handle(
    conn: asyncpg.Connection, envelope: Envelope, event: EventData, *, schema: str, source: str
) -> None:
    current = await store.lock_current(conn, event.lead_id)
    move = decide(current, event)
    if move is None:
        return
    await store.apply_move(conn, event.lead_id, move, envelope.id, envelope.type)
    await enqueue(
        conn,
        schema,
        StageChanged(
            lead_id=event.lead_id,
            funnel_id=move.funnel_id,
            funnel_version=move.funnel_version,
            from_stage=move.from_stage,
            to_stage=move.to_stage,
            to_stage_position=move.to_position,
            reason=move.reason,
            cause_event_id=envelope.id,
            cause_event_type=envelope.type,
            changed_at=move.occurred_at,
        ),
        source=source,
    )


def workers(runtime: ServiceRuntime) -> list[Worker]:
    settings = runtime.settings

    async def handler(conn: asyncpg.Connection, envelope: Envelope, event: EventData) -> None:
        await handle(conn, envelope, event, schema=settings.db_schema, source=settings.service_name)

    consumer = InboxConsumer(
        pool=runtime.pool,
        producer=runtime.producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.service_name,
        topics=[LEAD_EVENTS],
        handler=handler,
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
    )
    return [Worker("lead-events-consumer", consumer.run, consumer.stop)]
