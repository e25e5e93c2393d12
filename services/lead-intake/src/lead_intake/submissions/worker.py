"""Background housekeeping: expired idempotency keys are deleted every ten minutes."""

from __future__ import annotations

import logging
import sys

import asyncpg

from funnel_servicekit.loops import PollLoop
from lead_intake.submissions import service

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 600.0


class IdempotencyPurger(PollLoop):
    def __init__(self, pool: asyncpg.Pool, hours: float) -> None:
        # One statement deletes everything expired: a batch is never "full".
        super().__init__(
            "idempotency-purger", poll_seconds=INTERVAL_SECONDS, batch_size=sys.maxsize
        )
        self.pool = pool
        self.hours = hours

    async def step(self) -> int:
        deleted = await service.purge_expired_keys(self.pool, self.hours)
        if deleted:
            log.info("expired idempotency keys deleted", extra={"deleted": deleted})
        return deleted
