"""What the notifier does with events, one record at a time in the inbox transaction: keep
what it knows of each person, schedule the touches playbooks call for, cancel the ones the
person has outgrown. No network call here: a v2 event's sealed contact waits for the
contact resolver (people/worker.py), so an unreachable lead-intake stalls nothing."""

from __future__ import annotations

import functools

import asyncpg

from funnel_contracts import (
    ActivityRecorded,
    Envelope,
    EventData,
    LeadErased,
    LeadMerged,
    LeadOwnerChanged,
    LeadScored,
    LeakDetected,
    LeakResolved,
    StageChanged,
)
from funnel_contracts.lead_reader import LEAD_DETAIL_EVENTS, lead_details
from funnel_servicekit.runtime import Worker
from funnel_servicekit.unit_of_work import Outbox, UnitOfWork
from notifier.interface import INTERFACE
from notifier.people import service as people
from notifier.runtime import NotifierRuntime
from notifier.touches import service

HANDLED = (
    *(e.event_type for e in LEAD_DETAIL_EVENTS),
    LeadErased.event_type,
    LeadMerged.event_type,
    ActivityRecorded.event_type,
    StageChanged.event_type,
    LeadScored.event_type,
    LeadOwnerChanged.event_type,
    LeakDetected.event_type,
    LeakResolved.event_type,
)
# The notifier's own outbox (the consumer emits nothing; a runtime passes its own).
OUTBOX = Outbox("notifier", "notifier")


async def handle(
    conn: asyncpg.Connection, envelope: Envelope, event: EventData, *, outbox: Outbox = OUTBOX
) -> None:
    """One event inside the inbox transaction."""
    uow = UnitOfWork(conn, outbox)
    details = lead_details(event)
    if details is not None:
        await people.remember_person(uow, details)
        if details.test:
            await service.forget_test_lead(uow, details.lead_id)
    elif isinstance(event, LeadErased):
        await service.forget_lead(uow, event.lead_id)
    elif isinstance(event, LeadMerged):
        await service.merge_leads(uow, event)
    elif isinstance(event, StageChanged):
        await service.enter_stage(uow, envelope.id, event)
    elif isinstance(event, ActivityRecorded):
        await service.record_activity(uow, envelope.id, event)
    elif isinstance(event, LeadScored):
        await service.record_score(uow, envelope.id, event)
    elif isinstance(event, LeadOwnerChanged):
        await service.record_owner(uow, event)
    elif isinstance(event, LeakDetected | LeakResolved):
        await service.record_leak(uow, envelope.id, event)


def consumer_worker(runtime: NotifierRuntime) -> Worker:
    consumer = runtime.inbox_consumer(
        topics=INTERFACE.consumes,
        handler=functools.partial(handle, outbox=runtime.outbox),
        handled_types=HANDLED,
    )
    return Worker("events-consumer", consumer.run, consumer.stop)
