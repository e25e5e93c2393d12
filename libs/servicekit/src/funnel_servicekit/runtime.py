"""The service runtime: what a process holds (settings, pool, producer, its loops, the
service's own context) and the supervisor that keeps each background loop running.

`ServiceRuntime[SettingsT, ContextT]` is typed by the service's settings and by a context
object of its own (caches, rate limiters, registries): nothing is looked up by string.
The FastAPI app around it is built by `funnel_servicekit.service_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer

from funnel_servicekit import metrics
from funnel_servicekit.inbox import BatchHandler, Handler, InboxConsumer
from funnel_servicekit.kafka import ProducerFactory
from funnel_servicekit.settings import ServiceSettings
from funnel_servicekit.unit_of_work import Outbox, Transactions
from funnel_servicekit.worker import Worker

log = logging.getLogger(__name__)
HEALTHY_RUN_SECONDS = 60.0  # a loop that ran this long before crashing restarts quickly again


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
ContextT = TypeVar("ContextT")


@dataclass
class ServiceRuntime(Generic[SettingsT, ContextT]):
    settings: SettingsT
    migrations_dir: Path
    # The service's own long-lived objects (typed by each service's `deps.py`).
    context: ContextT
    pool: asyncpg.Pool = field(init=False)
    producer: AIOKafkaProducer = field(init=False)
    # Makes a new producer for a loop whose shared one lost its idempotent session for good.
    producer_factory: ProducerFactory = field(init=False)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def outbox(self) -> Outbox:
        """Where this service's events go: its schema's outbox, under its name as source."""
        return Outbox(self.settings.db_schema, self.settings.service_name)

    @property
    def transactions(self) -> Transactions:
        """Units of work (a transaction and its outbox) on this service's pool."""
        return Transactions(self.pool, self.outbox)

    def inbox_consumer(
        self,
        *,
        topics: Collection[str],
        handler: Handler,
        handled_types: Collection[str],
        batch_handler: BatchHandler | None = None,
        max_poll_records: int = 200,
        batch_per_poll: bool = False,
        batch_wait_ms: int | None = None,
        polls_in_flight: int = 1,
    ) -> InboxConsumer:
        """The service's consumer group on `topics`, with this runtime's pool and producer."""
        return InboxConsumer(
            pool=self.pool,
            producer=self.producer,
            producer_factory=self.producer_factory,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.service_name,
            topics=topics,
            handler=handler,
            handled_types=handled_types,
            max_attempts=self.settings.consumer_max_attempts,
            batch_handler=batch_handler,
            max_poll_records=max_poll_records,
            commit_interval_seconds=self.settings.consumer_commit_interval_seconds,
            batch_per_poll=batch_per_poll,
            batch_wait_ms=batch_wait_ms,
            polls_in_flight=polls_in_flight,
        )

    def dead_workers(self) -> list[str]:
        return [name for name, task in self.tasks.items() if task.done()]


AnyRuntime = ServiceRuntime[Any, Any]
__all__ = ["AnyRuntime", "ServiceRuntime", "Worker", "WorkerFactory", "supervise"]
WorkerFactory = Callable[[Any], Sequence[Worker]]


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if the service begins to stop meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def supervise(
    worker: Worker,
    stopping: asyncio.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[asyncio.Event, float], Awaitable[None]] = _pause,
) -> None:
    """Run a loop; if it crashes, log and restart it (a loop must never stay dead).

    `worker.run` is called again on the same object, so every loop must be able to run
    after it ended (no client left closed by the last run). The wait before a restart
    doubles up to 30 s while the loop keeps crashing soon after it starts, and starts
    again from 1 s once a run lasted a minute.
    """
    delay = 1.0
    while True:
        started = clock()
        try:
            await worker.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if stopping.is_set():
                log.exception("worker failed while stopping", extra={"worker": worker.name})
                return
            if clock() - started >= HEALTHY_RUN_SECONDS:
                delay = 1.0
            log.exception(
                "worker crashed; restarting",
                extra={"worker": worker.name, "restart_in_seconds": delay},
            )
            metrics.WORKER_RESTARTS.labels(worker.name).inc()
            await pause(stopping, delay)
            if stopping.is_set():
                return
            delay = min(delay * 2, 30.0)
