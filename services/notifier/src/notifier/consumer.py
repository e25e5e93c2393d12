"""What notifier does with events: keep contacts, schedule the touches playbooks call for."""

from __future__ import annotations

import asyncpg

from funnel_contracts import Envelope, EventData, LeadCaptured, StageChanged
from funnel_contracts.topics import LEAD_EVENTS, STAGE_EVENTS
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.runtime import ServiceRuntime, Worker
from notifier import store
from notifier.playbooks import plan_for

HANDLED = (LeadCaptured.event_type, StageChanged.event_type)


async def handle(conn: asyncpg.Connection, envelope: Envelope, event: EventData) -> None:
    if isinstance(event, LeadCaptured):
        await store.upsert_contact(conn, event.lead_id, event.email, event.first_name)
        return
    plan = plan_for(event)
    if plan is None or not isinstance(event, StageChanged):
        return
    await store.schedule(
        conn,
        event.lead_id,
        plan,
        due_at=event.changed_at + plan.delay,
        funnel_id=event.funnel_id,
        stage=event.to_stage,
        cause_event_id=envelope.id,
    )
    await conn.execute("NOTIFY notifier_touches")


def consumer_worker(runtime: ServiceRuntime) -> Worker:
    settings = runtime.settings
    consumer = InboxConsumer(
        pool=runtime.pool,
        producer=runtime.producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.service_name,
        topics=[LEAD_EVENTS, STAGE_EVENTS],
        handler=handle,
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
    )
    return Worker("events-consumer", consumer.run, consumer.stop)
