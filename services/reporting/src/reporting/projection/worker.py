"""The fold: a loop that moves the projection's queued conversion deltas into the
quarter-hour tables and their rollups every FUNNEL_CONVERSION_FOLD_SECONDS, and at once
again while a fold came back full (docs/decisions/0067)."""

from __future__ import annotations

import asyncpg

from funnel_servicekit.loops import PollLoop
from funnel_servicekit.unit_of_work import Outbox, Transactions
from funnel_servicekit.worker import Worker
from reporting.projection import service
from reporting.runtime import ReportingRuntime

# Queue rows folded in one transaction, per table: a partition batch makes a row per funnel,
# first stage and dimension (some 50), so this is some 80 batches summed in one fold.
FOLD_ROWS = 4096


class Fold(PollLoop):
    def __init__(
        self, pool: asyncpg.Pool, *, schema: str, source: str, poll_seconds: float
    ) -> None:
        super().__init__("conversion-fold", poll_seconds=poll_seconds, batch_size=FOLD_ROWS)
        self.transactions = Transactions(pool, Outbox(schema, source))

    async def step(self) -> int:
        return await self.transactions.run(lambda uow: service.fold_queued(uow, self.batch_size))


def fold_worker(runtime: ReportingRuntime) -> Worker:
    settings = runtime.settings
    return Fold(
        runtime.pool,
        schema=settings.db_schema,
        source=settings.service_name,
        poll_seconds=settings.conversion_fold_seconds,
    ).worker()
