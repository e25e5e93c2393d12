"""What stage-tracker does with each consumed event: signal -> machine -> state and events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from funnel_contracts import (
    ActivityRecorded,
    ConsentChanged,
    Envelope,
    EventData,
    LeadCaptured,
    LeadCapturedV2,
    LeadErased,
    LeadUpdated,
    LeadUpdatedV2,
    StageMoveRequested,
    TouchClicked,
    TouchOpened,
)
from funnel_contracts.topics import ACTIVITY_EVENTS, LEAD_EVENTS, STAGE_COMMANDS, TOUCH_EVENTS
from funnel_servicekit.inbox import Delivery, InboxConsumer, consume_span
from funnel_servicekit.runtime import Worker
from stage_tracker.commands import apply_command, command_signal
from stage_tracker.funnel_registry import FunnelRegistry, PublishedVersions
from stage_tracker.lead_batch import LeadBatch
from stage_tracker.machine import apply, capture
from stage_tracker.runtime import TrackerRuntime
from stage_tracker.settings import TrackerSettings
from stage_tracker.signals import CAPTURED, signal_of

HANDLED = tuple(
    e.event_type
    for e in (
        LeadCaptured,
        LeadCapturedV2,
        LeadUpdated,
        LeadUpdatedV2,
        LeadErased,
        ActivityRecorded,
        TouchOpened,
        TouchClicked,
        ConsentChanged,
        StageMoveRequested,
    )
)
# The tracker's own commands too: live they change nothing, a replay needs them.
TOPICS = (LEAD_EVENTS, ACTIVITY_EVENTS, TOUCH_EVENTS, STAGE_COMMANDS)


@dataclass(frozen=True)
class EventHandler:
    """Consumed events -> the machine -> state and emitted events; a batch at a time.

    A batch's leads are read and written set-based (LeadBatch); each event still goes through
    the machine alone, in order. UnknownFunnel/UnknownStage/Refused fail the batch: the kit
    then runs it event by event (`__call__`) so that only the bad event is dead-lettered.
    """

    registry: FunnelRegistry
    schema: str
    source: str

    async def batch(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        """A partition's fresh events, inside the inbox transaction."""
        leads = await LeadBatch.load(conn, {d.event.lead_id for d in deliveries})
        versions: list[PublishedVersions] = []  # read at the first capture of the batch
        for d in deliveries:
            with consume_span(d.topic, d.envelope):
                await self._apply(conn, leads, versions, d.envelope, d.event)
        await leads.flush(conn, self.schema)

    async def __call__(
        self, conn: asyncpg.Connection, envelope: Envelope, event: EventData
    ) -> None:
        """One event, inside the inbox transaction."""
        leads = await LeadBatch.load(conn, [event.lead_id])
        await self._apply(conn, leads, [], envelope, event)
        await leads.flush(conn, self.schema)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        leads: LeadBatch,
        versions: list[PublishedVersions],
        envelope: Envelope,
        event: EventData,
    ) -> None:
        lead_id = event.lead_id
        if isinstance(event, LeadErased):
            leads.erase(lead_id, event.erased_at)
            return
        if lead_id in leads.erased:
            return  # a straggler for a forgotten person: keep nothing
        if isinstance(event, StageMoveRequested):
            await self._command(conn, leads, envelope.id, event)
            return
        if isinstance(event, LeadUpdated | LeadUpdatedV2) and event.funnel_id is not None:
            await self.registry.latest(conn, event.funnel_id)  # an unknown funnel is refused
        signal = signal_of(event, envelope.id)
        if signal is None:
            return
        state = leads.state(lead_id)
        if state is None:
            if signal.kind != CAPTURED or signal.funnel_id is None:
                # Arrived before its capture (another topic): kept, folded in at the capture.
                leads.record_signal(lead_id, signal, 0.0, applied=False)
                return
            if not versions:
                versions.append(await self.registry.published(conn))
            version = versions[0].entered_at(signal.funnel_id, envelope.time)
            funnel = await self.registry.get(conn, signal.funnel_id, version)
            pending = leads.pending(lead_id)
            outcome = capture(funnel, signal, pending)
            folded = [signal, *pending]
        else:
            funnel = await self.registry.get(conn, state.funnel_id, state.funnel_version)
            outcome = apply(state, funnel, signal)
            folded = [signal]
        for s in folded:
            points = funnel.scoring.engagement.get(s.kind, 0.0)
            leads.record_signal(lead_id, s, points, applied=True)
        leads.save(lead_id, outcome, funnel, source=self.source)

    async def _command(
        self, conn: asyncpg.Connection, leads: LeadBatch, command_id: str, cmd: StageMoveRequested
    ) -> None:
        """A manual or timer move read back: live it was made already; a replay makes it."""
        state = leads.state(cmd.lead_id)
        if state is None or command_id in state.seen:
            return
        funnel = await self.registry.get(conn, state.funnel_id, state.funnel_version)
        target = None
        if cmd.funnel_version is not None and cmd.funnel_version != state.funnel_version:
            target = await self.registry.get(conn, cmd.funnel_id, cmd.funnel_version)
        outcome = apply_command(state, funnel, cmd, command_id, target)
        leads.record_signal(cmd.lead_id, command_signal(command_id, cmd), 0.0, applied=True)
        leads.save(cmd.lead_id, outcome, target or funnel, source=self.source)


def event_consumer(runtime: TrackerRuntime, registry: FunnelRegistry) -> InboxConsumer:
    settings = runtime.settings
    assert isinstance(settings, TrackerSettings)
    handler = EventHandler(registry, settings.db_schema, settings.service_name)
    return InboxConsumer(
        pool=runtime.pool,
        producer=runtime.producer,
        producer_factory=runtime.producer_factory,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.service_name,
        topics=list(TOPICS),
        handler=handler,
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
        batch_handler=handler.batch,
        max_poll_records=settings.consumer_max_poll_records,
    )


def workers(runtime: TrackerRuntime) -> list[Worker]:
    from stage_tracker.stall_timers import stall_timer_worker

    registry: FunnelRegistry = runtime.context.registry
    consumer = event_consumer(runtime, registry)
    return [
        Worker("funnel-events-consumer", consumer.run, consumer.stop),
        stall_timer_worker(runtime, registry),
    ]
