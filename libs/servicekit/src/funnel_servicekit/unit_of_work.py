"""A unit of work: one database transaction and the outbox its events go to.

Every use case that changes state takes one: what it writes and the events it emits commit
together or not at all (the transactional outbox). Nothing in it reaches the network: a use
case makes its network calls before it opens the unit of work, or after it committed.
`Transactions` opens units of work, and runs a whole one again when PostgreSQL undid it
(a deadlock, a serialization failure).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from funnel_contracts import Envelope, EventData
from funnel_servicekit import outbox


@dataclass(frozen=True)
class Outbox:
    """Where a service's events go: its schema's outbox, under its CloudEvents source."""

    schema: str
    source: str


@dataclass(frozen=True)
class UnitOfWork:
    """A connection inside an open transaction, and the outbox of the same transaction."""

    conn: asyncpg.Connection
    outbox: Outbox

    async def emit(
        self, event: EventData, *, event_id: str | None = None, topic: str | None = None
    ) -> Envelope:
        """Queue `event` in this transaction (published after commit by the relay)."""
        return await outbox.enqueue(
            self.conn,
            self.outbox.schema,
            event,
            source=self.outbox.source,
            event_id=event_id,
            topic=topic,
        )


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool, box: Outbox) -> AsyncIterator[UnitOfWork]:
    """A pooled connection and its transaction: committed when the block ends, else rolled back."""
    async with pool.acquire() as conn, conn.transaction():
        yield UnitOfWork(conn, box)


T = TypeVar("T")
log = logging.getLogger(__name__)
# PostgreSQL undid the whole transaction: running it again is safe.
RETRYABLE: tuple[type[Exception], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


@dataclass(frozen=True)
class Transactions:
    """Opens units of work on a pool, for one service's outbox."""

    pool: asyncpg.Pool
    outbox: Outbox

    def __call__(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return unit_of_work(self.pool, self.outbox)

    async def run(self, work: Callable[[UnitOfWork], Awaitable[T]], *, attempts: int = 3) -> T:
        """`work` in one unit of work, run again (a fresh one) when PostgreSQL undid it."""
        for attempt in range(1, attempts + 1):
            try:
                async with self() as uow:
                    return await work(uow)
            except RETRYABLE:
                if attempt == attempts:
                    raise
                log.warning("transaction undone by PostgreSQL; running it again (%d)", attempt)
        raise AssertionError("unreachable")
