"""What stage-tracker does with each consumed event: a record -> the moves service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from funnel_contracts import (
    ActivityRecorded,
    ConsentChanged,
    Envelope,
    EventData,
    LeadErased,
    LeadMerged,
    OwnerAssigned,
    StageMoveRequested,
    TouchClicked,
    TouchOpened,
)
from funnel_contracts.lead_reader import LEAD_DETAIL_EVENTS
from funnel_servicekit.inbox import Delivery, InboxConsumer
from funnel_servicekit.unit_of_work import Outbox, UnitOfWork
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.interface import INTERFACE
from stage_tracker.moves import service
from stage_tracker.runtime import TrackerRuntime
from stage_tracker.settings import TrackerSettings

_HANDLED_EVENTS: tuple[type[EventData], ...] = (
    *LEAD_DETAIL_EVENTS,  # captured and updated, v1 and v2
    LeadErased,
    LeadMerged,
    ActivityRecorded,
    TouchOpened,
    TouchClicked,
    ConsentChanged,
    StageMoveRequested,
    OwnerAssigned,
)
HANDLED = tuple(e.event_type for e in _HANDLED_EVENTS)
# The tracker's own commands too: live they change nothing, a rebuild needs them.
TOPICS = INTERFACE.consumes


@dataclass(frozen=True)
class EventHandler:
    """Consumed events -> the machine -> state and emitted events; a batch at a time.

    UnknownFunnel/UnknownStage/Refused fail the batch: the kit then runs it event by event
    (`__call__`) so that only the bad event is dead-lettered.
    """

    registry: FunnelRegistry
    schema: str
    source: str

    def _uow(self, conn: asyncpg.Connection) -> UnitOfWork:
        return UnitOfWork(conn, Outbox(self.schema, self.source))

    async def batch(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        """A poll's fresh events (each partition's in order), inside the inbox transaction."""
        await service.consume(self._uow(conn), self.registry, deliveries)

    async def __call__(
        self, conn: asyncpg.Connection, envelope: Envelope, event: EventData
    ) -> None:
        """One event, inside the inbox transaction."""
        await service.consume_one(self._uow(conn), self.registry, envelope, event)


def poll_options(settings: TrackerSettings) -> dict[str, Any]:
    """How the service's consumer takes its polls (the tests and benches take theirs so)."""
    return {
        "max_poll_records": settings.consumer_max_poll_records,
        # The whole poll in one `batch` call (each partition's events in order): its leads
        # locked, read and written once per poll rather than once per partition (0077).
        "batch_per_poll": True,
        # The next poll's leads read and moved while this one's are written (0094): `consume`
        # says when it holds its leads.
        "polls_in_flight": settings.consumer_polls_in_flight,
    }


def event_consumer(runtime: TrackerRuntime) -> InboxConsumer:
    settings = runtime.settings
    handler = EventHandler(runtime.context.registry, settings.db_schema, settings.service_name)
    return runtime.inbox_consumer(
        topics=TOPICS,
        handler=handler,
        handled_types=HANDLED,
        batch_handler=handler.batch,
        **poll_options(settings),
    )
