"""What stage-tracker does with each consumed event: signal -> machine -> state and events."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from funnel_contracts import (
    ActivityRecorded,
    ConsentChanged,
    Envelope,
    EventData,
    LeadCaptured,
    LeadErased,
    LeadUpdated,
    TouchClicked,
    TouchOpened,
)
from funnel_contracts.topics import ACTIVITY_EVENTS, LEAD_EVENTS, TOUCH_EVENTS
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.runtime import ServiceRuntime, Worker
from stage_tracker import store
from stage_tracker.funnel_registry import FunnelRegistry
from stage_tracker.lead_updates import save_outcome
from stage_tracker.machine import apply, capture
from stage_tracker.signals import CAPTURED, signal_of

HANDLED = tuple(
    e.event_type
    for e in (
        LeadCaptured,
        LeadUpdated,
        LeadErased,
        ActivityRecorded,
        TouchOpened,
        TouchClicked,
        ConsentChanged,
    )
)
TOPICS = (LEAD_EVENTS, ACTIVITY_EVENTS, TOUCH_EVENTS)


@dataclass(frozen=True)
class EventHandler:
    registry: FunnelRegistry
    schema: str
    source: str

    async def __call__(
        self, conn: asyncpg.Connection, envelope: Envelope, event: EventData
    ) -> None:
        """One event, inside the inbox transaction. UnknownFunnel/UnknownStage -> dead letter."""
        lead_id = event.lead_id
        # Topics are not ordered among themselves; this lock keeps one writer per lead even
        # when two replicas hold partitions of different topics, and before the lead row exists.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"lead:{lead_id}")
        if isinstance(event, LeadErased):
            await store.erase(conn, lead_id, event.erased_at)
            return
        if await store.is_erased(conn, lead_id):
            return  # a straggler for a forgotten person: keep nothing
        if isinstance(event, LeadUpdated) and event.funnel_id is not None:
            await self.registry.latest(conn, event.funnel_id)  # an unknown funnel is refused
        signal = signal_of(event, envelope.id)
        if signal is None:
            return
        state = await store.lock_state(conn, lead_id)
        if state is None:
            if signal.kind != CAPTURED or signal.funnel_id is None:
                # Arrived before its capture (another topic): kept, folded in at the capture.
                await store.record_signal(conn, lead_id, signal, 0.0, applied=False)
                return
            funnel = await self.registry.latest(conn, signal.funnel_id)
            pending = await store.pending_signals(conn, lead_id)
            outcome = capture(funnel, signal, pending)
            folded = [signal, *pending]
        else:
            funnel = await self.registry.get(conn, state.funnel_id, state.funnel_version)
            outcome = apply(state, funnel, signal)
            folded = [signal]
        for s in folded:
            points = funnel.scoring.engagement.get(s.kind, 0.0)
            await store.record_signal(conn, lead_id, s, points, applied=True)
        await save_outcome(conn, lead_id, outcome, funnel, schema=self.schema, source=self.source)


def event_consumer(runtime: ServiceRuntime, registry: FunnelRegistry) -> InboxConsumer:
    settings = runtime.settings
    return InboxConsumer(
        pool=runtime.pool,
        producer=runtime.producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.service_name,
        topics=list(TOPICS),
        handler=EventHandler(registry, settings.db_schema, settings.service_name),
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
    )


def workers(runtime: ServiceRuntime) -> list[Worker]:
    from stage_tracker.stall_timers import stall_timer_worker

    registry: FunnelRegistry = runtime.state.setdefault("registry", FunnelRegistry())
    consumer = event_consumer(runtime, registry)
    return [
        Worker("funnel-events-consumer", consumer.run, consumer.stop),
        stall_timer_worker(runtime, registry),
    ]
