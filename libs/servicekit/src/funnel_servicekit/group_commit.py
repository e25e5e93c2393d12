"""Group commit: the units of work of concurrent callers share one transaction and one fsync.

`GroupCommit.run(transactions, work)` answers what `transactions.run(work)` would, but `work`
joins a group: the first caller of a group waits at most `max_wait_seconds` for others (or
until `max_size` have joined), then the group runs in one transaction, each unit after a
savepoint of its own, and commits once. Every caller gets its own outcome only after the
commit, so an answer never tells of rows that are not durable yet.

- A unit that raises (a 4xx problem, a constraint violation, a bug) is rolled back to its
  savepoint and gets its own exception; the others of its group go on and commit.
- A unit that PostgreSQL undid for a deadlock or a serialization failure is run again after
  its group, alone, in a transaction of its own (`Transactions.run`, which retries again).
- When the database cannot be reached, or the commit itself fails, every unit of the group
  that had not failed on its own gets that error (a 503 for an API), and nothing of the group
  is written.
- A caller cancelled while its unit waits for its turn is left out; once its unit runs, it
  commits with its group (as a request cancelled after its commit would have).

Up to `groups_in_flight` groups run at once, each on its own pooled connection: while they
commit, the next callers queue and go together as soon as one finishes, so under load groups
fill by themselves and `max_wait_seconds` only bounds the wait of a quiet moment. A group is
at most 64 units: each savepoint that writes is a subtransaction, and PostgreSQL's per-backend
cache of subtransaction ids holds 64 (past it, every snapshot of every backend gets slower).

A group of one (a quiet moment) runs without a savepoint: its transaction is its own, and its
failure rolls it back whole with the same outcome for its caller.

A group commit may also be given a `batch`: units that carry an `item` (something their
caller made ready, with no database read) are first written together by one call of it, in
a savepoint of its own. `batch` answers each item's result, or `NOT_DONE` for one it left
to its unit (a person known already, say); those units, and units without an item, then
run their own work as above. A batch that raises is rolled back to its savepoint and every
unit runs its own work: the same outcomes, more round trips.

Units run one after another on the group's connection, in the group's task. Each runs in its
caller's OpenTelemetry context (the trace its events carry is the caller's), and the
transaction guard sees the group's task inside a transaction, as it would the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from opentelemetry import context as otel_context
from prometheus_client import Counter, Histogram

from funnel_servicekit.db import DATABASE_UNREACHABLE
from funnel_servicekit.unit_of_work import RETRYABLE, Transactions, UnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_GROUP_SIZE = 64  # PostgreSQL's PGPROC_MAX_CACHED_SUBXIDS
SAVEPOINT = "group_unit"

GROUP_COMMITS = Counter(
    "funnel_group_commit_transactions_total",
    "Transactions committed (or failed) by group commit, by outcome (rolled_back: a group "
    "of one whose post failed on its own)",
    ["name", "outcome"],
)
GROUP_UNITS = Counter(
    "funnel_group_commit_units_total",
    "Units of work run by group commit, by outcome (committed, failed alone, group failed, "
    "run again alone, cancelled before their turn; batched: written by the group's batch, "
    "also counted committed)",
    ["name", "outcome"],
)
GROUP_BATCHES = Counter(
    "funnel_group_commit_batches_total",
    "Groups whose items were written together by one batch, by outcome (written, or "
    "rolled_back: every unit then ran its own work)",
    ["name", "outcome"],
)
GROUP_SIZE = Histogram(
    "funnel_group_commit_size",
    "Units of work per group-commit transaction",
    ["name"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
GROUP_WAIT_SECONDS = Histogram(
    "funnel_group_commit_wait_seconds",
    "Seconds a unit of work waited for its group to start",
    ["name"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


BATCH_SAVEPOINT = "group_batch"


class _NotDone:
    def __repr__(self) -> str:
        return "NOT_DONE"


#: What a batch answers for an item it left to its unit's own work.
NOT_DONE: Any = _NotDone()
#: Writes a group's items together: each item's result (as its unit's work would answer),
#: or NOT_DONE.
BatchWork = Callable[[UnitOfWork, list[Any]], Awaitable[list[Any]]]


@dataclass
class _Unit(Generic[T]):
    work: Callable[[UnitOfWork], Awaitable[T]]
    future: asyncio.Future[T]
    context: otel_context.Context
    queued_at: float
    item: Any = None
    result: Any = None
    error: BaseException | None = None
    again: bool = False  # undone by PostgreSQL: run again alone after the group
    ran: bool = False  # its work returned inside the group's transaction


@dataclass
class _Lane:
    """The queue of one `Transactions` (one pool, one outbox) and its groups in flight."""

    transactions: Transactions
    queue: deque[_Unit[Any]] = field(default_factory=deque)
    filled: asyncio.Event = field(default_factory=asyncio.Event)
    collector: asyncio.Task[None] | None = None


class GroupCommit:
    """Runs concurrent callers' units of work in shared transactions (see the module)."""

    def __init__(
        self,
        name: str,
        *,
        max_wait_seconds: float = 0.002,
        max_size: int = MAX_GROUP_SIZE,
        groups_in_flight: int = 2,
        batch: BatchWork | None = None,
    ) -> None:
        if not 1 <= max_size <= MAX_GROUP_SIZE:
            raise ValueError(f"max_size must be 1..{MAX_GROUP_SIZE}")
        if max_wait_seconds < 0 or groups_in_flight < 1:
            raise ValueError("max_wait_seconds must be >= 0 and groups_in_flight >= 1")
        self.name = name
        self.max_wait_seconds = max_wait_seconds
        self.max_size = max_size
        self.groups_in_flight = groups_in_flight
        self.batch = batch
        self._lanes: dict[Transactions, _Lane] = {}
        self._slots: asyncio.Semaphore | None = None
        self._groups: set[asyncio.Task[None]] = set()

    async def run(
        self,
        transactions: Transactions,
        work: Callable[[UnitOfWork], Awaitable[T]],
        *,
        item: Any = None,
    ) -> T:
        """`work`'s result once its group committed; its own exception, or the group's.

        With `item` (and a `batch`), the unit is first offered to the group's batch."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(transactions)
        if lane is None:
            lane = self._lanes[transactions] = _Lane(transactions)
        unit: _Unit[T] = _Unit(
            work, loop.create_future(), otel_context.get_current(), time.monotonic(), item
        )
        lane.queue.append(unit)
        if len(lane.queue) >= self.max_size:
            lane.filled.set()
        if lane.collector is None:
            lane.collector = loop.create_task(self._collect(lane))
        # Cancelling the caller cancels the future: a unit not started yet is then skipped.
        return await unit.future

    async def wait_idle(self) -> None:
        """Until no group is being gathered or run (for a clean shutdown and for tests)."""
        while True:
            collectors = [lane.collector for lane in self._lanes.values() if lane.collector]
            pending = [*self._groups, *collectors]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    async def _collect(self, lane: _Lane) -> None:
        """Gathers groups from the lane's queue while it has callers, one group at a time."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.groups_in_flight)
        slots = self._slots
        try:
            while self._drop_cancelled(lane.queue):
                await slots.acquire()
                try:
                    await self._wait_for_group(lane)
                    group = self._take(lane.queue)
                    lane.filled.clear()
                    if len(lane.queue) >= self.max_size:
                        lane.filled.set()
                except BaseException:
                    slots.release()
                    raise
                if not group:
                    slots.release()
                    continue
                task = asyncio.get_running_loop().create_task(self._commit(lane, group, slots))
                self._groups.add(task)
                task.add_done_callback(self._groups.discard)
        finally:
            lane.collector = None

    def _drop_cancelled(self, queue: deque[_Unit[Any]]) -> bool:
        """Whether a caller still waits in `queue`, after dropping cancelled ones at its head."""
        while queue and queue[0].future.done():
            queue.popleft()
            GROUP_UNITS.labels(self.name, "cancelled").inc()
        return bool(queue)

    def _take(self, queue: deque[_Unit[Any]]) -> list[_Unit[Any]]:
        """Up to `max_size` callers from the head of `queue` (cancelled ones dropped)."""
        group: list[_Unit[Any]] = []
        while queue and len(group) < self.max_size:
            unit = queue.popleft()
            if unit.future.done():
                GROUP_UNITS.labels(self.name, "cancelled").inc()
            else:
                group.append(unit)
        return group

    async def _wait_for_group(self, lane: _Lane) -> None:
        """Until `max_size` callers queued or the oldest one waited `max_wait_seconds`."""
        if not lane.queue:
            return
        remaining = lane.queue[0].queued_at + self.max_wait_seconds - time.monotonic()
        if len(lane.queue) >= self.max_size or remaining <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.filled.wait(), remaining)

    async def _commit(self, lane: _Lane, group: list[_Unit[Any]], slots: asyncio.Semaphore) -> None:
        started = time.monotonic()
        try:
            for unit in group:
                GROUP_WAIT_SECONDS.labels(self.name).observe(started - unit.queued_at)
            GROUP_SIZE.labels(self.name).observe(len(group))
            try:
                async with lane.transactions() as uow:
                    if len(group) == 1:
                        await self._run_lone_unit(uow, group[0])
                    rest = await self._run_batch(uow, group) if len(group) > 1 else []
                    for unit in rest:
                        if unit.future.done():  # its caller was cancelled before its turn
                            GROUP_UNITS.labels(self.name, "cancelled").inc()
                            continue
                        await self._run_unit(uow, unit)
            except _LoneUnitUndone:
                GROUP_COMMITS.labels(self.name, "rolled_back").inc()
            except BaseException as exc:
                GROUP_COMMITS.labels(self.name, "failed").inc()
                for unit in group:
                    if unit.error is None and not unit.again and not unit.future.done():
                        unit.error = exc
                        GROUP_UNITS.labels(self.name, "group_failed").inc()
                if not isinstance(exc, Exception):
                    raise
            else:
                GROUP_COMMITS.labels(self.name, "committed").inc()
                committed = sum(1 for unit in group if unit.ran)
                GROUP_UNITS.labels(self.name, "committed").inc(committed)
        finally:
            slots.release()
            for unit in group:
                if not unit.again:
                    _settle(unit)
        for unit in group:
            if unit.again:
                await self._run_alone(lane, unit)

    async def _run_unit(self, uow: UnitOfWork, unit: _Unit[Any]) -> None:
        """One unit after a savepoint: its own failure is rolled back to it, and kept for its
        caller. The savepoint is not released (one round trip fewer per unit): the next
        unit's nests in it, and the group's commit ends them all."""
        token = otel_context.attach(unit.context)
        try:
            await uow.conn.execute(f"SAVEPOINT {SAVEPOINT}")
            try:
                unit.result = await unit.work(uow)
            except DATABASE_UNREACHABLE:
                raise  # the whole group's error: the connection is gone
            except RETRYABLE:
                await uow.conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                unit.again = True
            except Exception as exc:
                await uow.conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                unit.error = exc
                GROUP_UNITS.labels(self.name, "failed_alone").inc()
            else:
                unit.ran = True
        finally:
            otel_context.detach(token)

    async def _run_batch(self, uow: UnitOfWork, group: list[_Unit[Any]]) -> list[_Unit[Any]]:
        """The group's items written by one call of `batch`, in a savepoint; returns the
        units left to run their own work (all of them when the batch raised)."""
        offered = [u for u in group if u.item is not None and not u.future.done()]
        if self.batch is None or len(offered) < 2:
            return group
        await uow.conn.execute(f"SAVEPOINT {BATCH_SAVEPOINT}")
        try:
            results = await self.batch(uow, [u.item for u in offered])
            if len(results) != len(offered):
                raise RuntimeError("a batch must answer every item")
        except DATABASE_UNREACHABLE:
            raise  # the whole group's error: the connection is gone
        except Exception:
            await uow.conn.execute(f"ROLLBACK TO SAVEPOINT {BATCH_SAVEPOINT}")
            GROUP_BATCHES.labels(self.name, "rolled_back").inc()
            log.warning(
                "group %s: its batch failed; each unit runs alone", self.name, exc_info=True
            )
            return group
        GROUP_BATCHES.labels(self.name, "written").inc()
        done = 0
        for unit, result in zip(offered, results, strict=True):
            if result is not NOT_DONE:
                unit.result, unit.ran = result, True
                done += 1
        GROUP_UNITS.labels(self.name, "batched").inc(done)
        return [u for u in group if not u.ran]

    async def _run_lone_unit(self, uow: UnitOfWork, unit: _Unit[Any]) -> None:
        """A group of one: its transaction is its own, so no savepoint (one round trip
        fewer); its own failure rolls the transaction back (`_LoneUnitUndone`), as a
        savepoint would have, with the same outcome for its caller."""
        if unit.future.done():  # its caller was cancelled before its turn
            GROUP_UNITS.labels(self.name, "cancelled").inc()
            return
        token = otel_context.attach(unit.context)
        try:
            unit.result = await unit.work(uow)
        except DATABASE_UNREACHABLE:
            raise  # the group's error, as in a larger group
        except RETRYABLE:
            unit.again = True
            raise _LoneUnitUndone from None
        except Exception as exc:
            unit.error = exc
            GROUP_UNITS.labels(self.name, "failed_alone").inc()
            raise _LoneUnitUndone from None
        else:
            unit.ran = True
        finally:
            otel_context.detach(token)

    async def _run_alone(self, lane: _Lane, unit: _Unit[Any]) -> None:
        GROUP_UNITS.labels(self.name, "run_again_alone").inc()
        log.warning("unit of work undone by PostgreSQL in group %s; running it alone", self.name)
        if unit.future.done():
            return
        token = otel_context.attach(unit.context)
        try:
            unit.result = await lane.transactions.run(unit.work)
        except Exception as exc:
            unit.error = exc
        finally:
            otel_context.detach(token)
        _settle(unit)


class _LoneUnitUndone(Exception):
    """A group of one failed on its own: roll its transaction back, keep the unit's outcome."""


def _settle(unit: _Unit[Any]) -> None:
    if unit.future.done():
        return
    if isinstance(unit.error, asyncio.CancelledError):
        unit.future.cancel()  # the group's task was cancelled (the process stopping)
    elif unit.error is not None:
        unit.future.set_exception(unit.error)
    else:
        unit.future.set_result(unit.result)
