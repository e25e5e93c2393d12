"""The stall timer loop: leads with no activity past their stage's limit stall, then are lost.

Timers are the `timer_due_at` column, so they survive restarts; several replicas share the
work through FOR UPDATE SKIP LOCKED. Each firing is a move by the timer, and a command in the
tracker's own input log (a rebuild fires it too).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from funnel_servicekit.loops import PollLoop
from funnel_servicekit.unit_of_work import Outbox, Transactions
from funnel_servicekit.worker import Worker
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.runtime import TrackerRuntime
from stage_tracker.timers import service


def _now() -> datetime:
    return datetime.now(UTC)


class StallTimers(PollLoop):
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
        super().__init__("stall-timers", poll_seconds=poll_seconds, batch_size=batch_size)
        self.transactions = Transactions(pool, Outbox(schema, source))
        self.registry = registry
        self.clock = clock

    async def step(self) -> int:
        return await self.fire_due()

    async def fire_due(self) -> int:
        """Fire one batch of due timers in one transaction; returns how many leads moved."""
        return await service.fire_due(
            self.transactions, self.registry, self.clock(), self.batch_size
        )


def stall_timer_worker(runtime: TrackerRuntime) -> Worker:
    settings = runtime.settings
    timers = StallTimers(
        runtime.pool,
        runtime.context.registry,
        schema=settings.db_schema,
        source=settings.service_name,
        poll_seconds=settings.stall_timer_poll_seconds,
    )
    return timers.worker()
