"""What the notifier does with events, a partition's batch at a time in the inbox transaction
(or one record at a time when the kit falls back to it): keep what it knows of each person,
schedule the touches playbooks call for, cancel the ones the person has outgrown. No network
call here: a v2 event's sealed contact waits for the contact resolver (people/worker.py), so
an unreachable lead-intake stalls nothing."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Sequence
from uuid import UUID

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
from funnel_servicekit.db import plan_each_call
from funnel_servicekit.inbox import Delivery, consume_span
from funnel_servicekit.runtime import Worker
from funnel_servicekit.telemetry import spans_recorded, unrecorded_child_headers
from funnel_servicekit.unit_of_work import Outbox, UnitOfWork
from notifier.interface import INTERFACE
from notifier.people import service as people
from notifier.playbooks.service import PlaybookCache
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
    """One event inside the inbox transaction (the kit's record-by-record path)."""
    await plan_each_call(conn)
    await _apply(service.Consuming(UnitOfWork(conn, outbox)), envelope, event)


async def handle_batch(
    conn: asyncpg.Connection,
    deliveries: Sequence[Delivery],
    *,
    outbox: Outbox = OUTBOX,
    playbooks: PlaybookCache | None = None,
    wake_within: float | None = None,
) -> None:
    """A poll's fresh events (each partition's in order), in the inbox transaction: what
    every event asks (erased? a test lead? the playbooks' revision) is read once for the
    poll in one statement, the playbooks come from `playbooks` (read again only when their
    revision moved), each wake-up is sent once (`wake_within`: see `Consuming`), and no span
    is made where none would be recorded (the touches still carry each event's trace). The
    events themselves go through the same use cases as one at a time."""
    # The waves join many leads to tables that grow from empty (docs/decisions/0090).
    await plan_each_call(conn)
    ids = {d.event.lead_id for d in deliveries}
    ids |= {d.event.merged_lead_id for d in deliveries if isinstance(d.event, LeadMerged)}
    batch = await service.Consuming.load(
        UnitOfWork(conn, outbox), ids, playbooks, wake_within=wake_within
    )
    if spans_recorded():
        for d in deliveries:
            with consume_span(d.topic, d.envelope):
                await _apply(batch, d.envelope, d.event)
    else:
        segment: list[Delivery] = []
        for d in deliveries:
            if isinstance(d.event, LeadMerged):  # two people's events meet: in order
                await _apply_in_waves(batch, segment)
                segment = []
            segment.append(d)
        await _apply_in_waves(batch, segment)
    await batch.known.flush()


async def _apply_in_waves(batch: service.Consuming, deliveries: Sequence[Delivery]) -> None:
    """The events in waves: each wave takes the next event of every lead, so each lead's
    events keep their order (those of different leads are independent), and a wave's stage
    changes, activities and scores go to PostgreSQL in one statement each (with one more
    for the touches its activities and scores schedule) instead of one or two per event
    (docs/decisions/0090). A merge, which concerns two leads, starts a new run of waves
    (see `handle_batch`): it is the first event of that run, so it meets both leads as the
    events before it left them."""
    queues: dict[UUID, deque[Delivery]] = {}
    for d in deliveries:
        queues.setdefault(d.event.lead_id, deque()).append(d)
    while queues:
        stages: list[service.Cause[StageChanged]] = []
        activities: list[service.Cause[ActivityRecorded]] = []
        scores: list[service.Cause[LeadScored]] = []
        for d in [q.popleft() for q in queues.values()]:
            event, trace = d.event, unrecorded_child_headers(d.envelope.trace)
            if isinstance(event, StageChanged):
                stages.append(service.Cause(d.envelope.id, event, trace))
            elif isinstance(event, ActivityRecorded):
                activities.append(service.Cause(d.envelope.id, event, trace))
            elif isinstance(event, LeadScored):
                scores.append(service.Cause(d.envelope.id, event, trace))
            else:
                batch.trace = trace
                await _apply(batch, d.envelope, event)
                batch.trace = None
        queues = {lead: q for lead, q in queues.items() if q}
        uow = batch.uow
        if stages:
            await service.enter_stages(uow, stages, batch)
        if activities:
            await service.record_activities(uow, activities, batch)
        if scores:
            await service.record_scores(uow, scores, batch)


async def _apply(batch: service.Consuming, envelope: Envelope, event: EventData) -> None:
    uow = batch.uow
    details = lead_details(event)
    if details is not None:
        await people.remember_person(uow, details, batch.known)
        if details.test:
            await service.forget_test_lead(uow, details.lead_id, batch)
    elif isinstance(event, LeadErased):
        await service.forget_lead(uow, event.lead_id, batch)
    elif isinstance(event, LeadMerged):
        await service.merge_leads(uow, event, batch)
    elif isinstance(event, StageChanged):
        await service.enter_stage(uow, envelope.id, event, batch)
    elif isinstance(event, ActivityRecorded):
        await service.record_activity(uow, envelope.id, event, batch)
    elif isinstance(event, LeadScored):
        await service.record_score(uow, envelope.id, event, batch)
    elif isinstance(event, LeadOwnerChanged):
        await service.record_owner(uow, event, batch)
    elif isinstance(event, LeakDetected | LeakResolved):
        await service.record_leak(uow, envelope.id, event, batch)


def consumer_worker(runtime: NotifierRuntime) -> Worker:
    settings = runtime.settings
    # The sender polls at least this often (and reads the next due time each time): a touch
    # due later than that needs no wake-up (docs/decisions/0073). A second of margin covers
    # its step.
    sender_poll = max(settings.scheduler_listening_poll_seconds, settings.scheduler_poll_seconds)
    consumer = runtime.inbox_consumer(
        topics=INTERFACE.consumes,
        handler=functools.partial(handle, outbox=runtime.outbox),
        batch_handler=functools.partial(
            handle_batch,
            outbox=runtime.outbox,
            playbooks=PlaybookCache(),
            wake_within=sender_poll + 1.0,
        ),
        handled_types=HANDLED,
        # One call for the whole poll: the people facts, the playbooks and the wake-ups are
        # read and sent once per poll, not once per partition (docs/decisions/0071).
        batch_per_poll=True,
        # Off the report's path: the broker holds a fetch for more events (decision 0073).
        batch_wait_ms=settings.consumer_batch_wait_ms or None,
    )
    return Worker("events-consumer", consumer.run, consumer.stop)
