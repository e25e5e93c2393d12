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

from funnel_servicekit.runtime import ServiceRuntime, Worker
from stage_tracker import store
from stage_tracker.funnel_registry import FunnelRegistry
from stage_tracker.lead_updates import save_outcome
from stage_tracker.machine import on_timer
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
            except (OSError, asyncpg.PostgresError):
                log.warning("stall timers: database unavailable; retrying", exc_info=True)
                fired = 0
            if fired < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)

    async def fire_due(self) -> int:
        """Fire one batch of due timers in one transaction; returns how many leads moved."""
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            fired = 0
            for lead_id in await store.due_leads(conn, now, self.batch_size):
                state = await store.lock_state(conn, lead_id)
                if state is None:
                    continue
                funnel = await self.registry.get(conn, state.funnel_id, state.funnel_version)
                outcome = on_timer(state, funnel, now)
                await save_outcome(
                    conn, lead_id, outcome, funnel, schema=self.schema, source=self.source
                )
                fired += len(outcome.moves) > 0
            return fired


def stall_timer_worker(runtime: ServiceRuntime, registry: FunnelRegistry) -> Worker:
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
