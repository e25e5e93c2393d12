"""The stall timer loop: leads with no activity past their stage's limit stall, then are lost.

Timers are the `timer_due_at` column, so they survive restarts; several replicas share the
work through FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from funnel_contracts import StageMoveRequested
from funnel_servicekit.outbox import outbox_record
from funnel_servicekit.runtime import Worker
from stage_tracker import store
from stage_tracker.commands import apply_command, command_signal
from stage_tracker.funnel_registry import FunnelRegistry
from stage_tracker.lead_batch import LeadBatch
from stage_tracker.runtime import TrackerRuntime
from stage_tracker.settings import TrackerSettings

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class StallTimers:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: FunnelRegistry,
        *,
        schema: str,
        source: str,
        poll_seconds: float,
        batch_size: int = 200,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.schema = schema
        self.source = source
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.clock = clock
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                fired = await self.fire_due()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("stall timers: database unavailable; retrying", exc_info=True)
                fired = 0
            if fired < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)

    async def fire_due(self) -> int:
        """Fire one batch of due timers in one transaction; returns how many leads moved."""
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            due = await store.due_leads(conn, now, self.batch_size)
            # Their rows are ours already (SKIP LOCKED): no advisory locks, so no lock cycle
            # with a consumer that holds those and waits for these rows.
            leads = await LeadBatch.load(conn, due, lock=False)
            fired = 0
            for lead_id in due:
                state = leads.state(lead_id)
                if state is None:
                    continue
                funnel = await self.registry.get(conn, state.funnel_id, state.funnel_version)
                # The firing is a command in the tracker's own input log: a replay fires it too.
                command = StageMoveRequested(
                    lead_id=lead_id, funnel_id=state.funnel_id, kind="stall_timer", requested_at=now
                )
                record = outbox_record(command, source=self.source)
                outcome = apply_command(state, funnel, command, record.envelope.id)
                if outcome.moves:
                    signal = command_signal(record.envelope.id, command)
                    leads.record_signal(lead_id, signal, 0.0, applied=True)
                    leads.add(record)
                    fired += 1
                leads.save(lead_id, outcome, funnel, source=self.source)
            await leads.flush(conn, self.schema)
            return fired


def stall_timer_worker(runtime: TrackerRuntime, registry: FunnelRegistry) -> Worker:
    settings = runtime.settings
    assert isinstance(settings, TrackerSettings)
    timers = StallTimers(
        runtime.pool,
        registry,
        schema=settings.db_schema,
        source=settings.service_name,
        poll_seconds=settings.stall_timer_poll_seconds,
    )
    return Worker("stall-timers", timers.run, timers.stop)
