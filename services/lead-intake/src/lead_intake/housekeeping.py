"""Background housekeeping: expired idempotency keys are deleted."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from funnel_servicekit.runtime import Worker
from lead_intake.runtime import IntakeRuntime
from lead_intake.settings import IntakeSettings
from lead_intake.store import idempotency

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 600.0


def idempotency_purger(runtime: IntakeRuntime, settings: IntakeSettings) -> Worker:
    stopping = asyncio.Event()

    async def run() -> None:
        while not stopping.is_set():
            async with runtime.pool.acquire() as conn:
                deleted = await idempotency.purge_expired(conn, settings.idempotency_hours)
            if deleted:
                log.info("expired idempotency keys deleted", extra={"deleted": deleted})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), INTERVAL_SECONDS)

    return Worker("idempotency-purger", run, stopping.set)
