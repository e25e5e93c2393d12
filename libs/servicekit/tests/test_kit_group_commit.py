"""Group commit's rules on a fake transaction (pure logic; the real PostgreSQL is exercised by
tests/integration/test_intake_group_commit.py): one commit for concurrent callers, answers only
after it, the bounded wait and the size cap, one caller's failure kept to itself, the group's
failure for all, a cancelled caller left out, a deadlocked unit run again alone."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import pytest
from opentelemetry import context as otel_context
from prometheus_client import REGISTRY

from funnel_servicekit.group_commit import NOT_DONE, GroupCommit
from funnel_servicekit.unit_of_work import Outbox, Transactions, UnitOfWork


@dataclass(eq=False)
class FakeDatabase:
    """Rows written in transactions with savepoints; only committed ones are kept."""

    committed: list[str] = field(default_factory=list)
    transactions: list[list[str]] = field(default_factory=list)  # each commit's rows
    fail_commit: BaseException | None = None
    statements: list[str] = field(default_factory=list)  # what the units' connections sent
    rolled_back: int = 0
    open_now: int = 0
    most_open: int = 0


@dataclass(eq=False)
class FakeConn:
    db: FakeDatabase
    rows: list[str] = field(default_factory=list)

    savepoints: list[int] = field(default_factory=list)

    def write(self, row: str) -> None:
        self.rows.append(row)

    async def execute(self, sql: str) -> None:
        """SAVEPOINT marks where the rows are; ROLLBACK TO SAVEPOINT undoes what came after
        the latest mark (which stays, as in PostgreSQL)."""
        await asyncio.sleep(0)
        self.db.statements.append(sql)
        if sql.startswith("SAVEPOINT "):
            self.savepoints.append(len(self.rows))
        elif sql.startswith("ROLLBACK TO SAVEPOINT "):
            del self.rows[self.savepoints[-1] :]
        else:
            raise AssertionError(sql)


@dataclass(eq=False)
class FakeTransactions:
    db: FakeDatabase

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork]:
        conn = FakeConn(self.db)
        self.db.open_now += 1
        self.db.most_open = max(self.db.most_open, self.db.open_now)
        try:
            yield UnitOfWork(cast(asyncpg.Connection, conn), Outbox("s", "test"))
            await asyncio.sleep(0)  # the commit's round trip
            if self.db.fail_commit is not None:
                raise self.db.fail_commit
            self.db.committed.extend(conn.rows)
            self.db.transactions.append(list(conn.rows))
        except BaseException:
            self.db.rolled_back += 1
            raise
        finally:
            self.db.open_now -= 1

    async def run(self, work: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
        async with self() as uow:
            return await work(uow)


def writes(
    row: str, *, fail: BaseException | None = None
) -> Callable[[UnitOfWork], Awaitable[str]]:
    async def work(uow: UnitOfWork) -> str:
        conn = cast(FakeConn, uow.conn)
        conn.write(row)
        await asyncio.sleep(0)  # a statement's round trip
        if fail is not None:
            raise fail
        return row

    return work


def units(outcome: str) -> float:
    labels = {"name": "t", "outcome": outcome}
    return REGISTRY.get_sample_value("funnel_group_commit_units_total", labels) or 0.0


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def tx(db: FakeDatabase) -> Transactions:
    return cast(Transactions, FakeTransactions(db))


async def test_concurrent_callers_share_one_commit_and_are_answered_after_it(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.05, max_size=64)
    seen_committed: dict[str, bool] = {}

    async def post(i: int) -> str:
        row = await batcher.run(tx, writes(f"lead-{i}"))
        seen_committed[row] = row in db.committed  # the answer comes after the commit
        return row

    answers = await asyncio.gather(*(post(i) for i in range(20)))

    assert answers == [f"lead-{i}" for i in range(20)]
    assert len(db.transactions) == 1
    assert sorted(db.committed) == sorted(answers)
    assert all(seen_committed.values())
    assert len(seen_committed) == 20


async def test_the_size_cap_closes_a_group_without_waiting(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=30.0, max_size=4, groups_in_flight=1)

    started = time.monotonic()
    await asyncio.gather(*(batcher.run(tx, writes(f"r{i}")) for i in range(8)))

    assert [len(rows) for rows in db.transactions] == [4, 4]
    assert time.monotonic() - started < 5  # the 30 s wait never ran out: the cap closed them


async def test_a_lone_caller_waits_at_most_the_bounded_wait(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.2, max_size=64)

    started = time.monotonic()
    assert await batcher.run(tx, writes("alone")) == "alone"
    waited = time.monotonic() - started

    assert 0.19 <= waited < 2.0
    assert db.transactions == [["alone"]]


async def test_no_wait_still_groups_the_callers_queued_behind_a_commit(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.0, max_size=64, groups_in_flight=1)

    await asyncio.gather(*(batcher.run(tx, writes(f"r{i}")) for i in range(30)))

    assert sorted(db.committed) == sorted(f"r{i}" for i in range(30))
    assert len(db.transactions) < 30


async def test_one_callers_failure_is_its_own(db: FakeDatabase, tx: Transactions) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.05)
    broken = ValueError("email taken by a constraint")

    answers = await asyncio.gather(
        batcher.run(tx, writes("a")),
        batcher.run(tx, writes("b", fail=broken)),
        batcher.run(tx, writes("c")),
        return_exceptions=True,
    )

    assert answers == ["a", broken, "c"]
    assert db.transactions == [["a", "c"]]  # b's row rolled back to its savepoint


def commits(outcome: str) -> float:
    labels = {"name": "t", "outcome": outcome}
    return REGISTRY.get_sample_value("funnel_group_commit_transactions_total", labels) or 0.0


async def test_a_group_of_one_sends_no_savepoint(db: FakeDatabase, tx: Transactions) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.0)
    assert await batcher.run(tx, writes("alone")) == "alone"
    assert db.transactions == [["alone"]]
    assert db.statements == []  # its transaction is its own: nothing to roll back to
    await asyncio.gather(batcher.run(tx, writes("a")), batcher.run(tx, writes("b")))
    assert db.statements.count("SAVEPOINT group_unit") >= 1  # a group of two has them


async def test_a_group_of_one_that_fails_rolls_back_with_its_own_error(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.0)
    own = ValueError("email taken by a constraint")
    before = (units("failed_alone"), units("committed"), commits("rolled_back"))

    with pytest.raises(ValueError, match="email taken") as raised:
        await batcher.run(tx, writes("broken", fail=own))

    assert raised.value is own
    assert (db.committed, db.rolled_back) == ([], 1)
    after = (units("failed_alone"), units("committed"), commits("rolled_back"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 0, 1]
    assert await batcher.run(tx, writes("next")) == "next"  # the lane goes on
    assert db.committed == ["next"]


async def test_a_group_of_one_undone_by_a_deadlock_runs_again(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.0)
    tries: list[int] = []

    async def deadlocks_once(uow: UnitOfWork) -> str:
        tries.append(1)
        cast(FakeConn, uow.conn).write(f"x{len(tries)}")
        if len(tries) == 1:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "x"

    assert await batcher.run(tx, deadlocks_once) == "x"
    assert db.transactions == [["x2"]]  # the first try's row rolled back with its transaction
    assert db.rolled_back == 1


async def test_a_failed_commit_fails_the_whole_group_and_writes_nothing(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.05)
    db.fail_commit = asyncpg.ConnectionDoesNotExistError("connection was closed")
    own = ValueError("invalid")
    before = {o: units(o) for o in ("committed", "failed_alone", "group_failed")}

    answers = await asyncio.gather(
        batcher.run(tx, writes("a")),
        batcher.run(tx, writes("b", fail=own)),
        batcher.run(tx, writes("c")),
        return_exceptions=True,
    )

    assert isinstance(answers[0], asyncpg.ConnectionDoesNotExistError)
    assert answers[1] is own  # its own failure does not depend on the commit
    assert isinstance(answers[2], asyncpg.ConnectionDoesNotExistError)
    assert db.committed == []
    moved = {o: units(o) - n for o, n in before.items()}
    assert moved == {"committed": 0, "failed_alone": 1, "group_failed": 2}


async def test_a_lost_connection_inside_a_unit_fails_the_whole_group(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.05)
    lost = asyncpg.InterfaceError("connection is closed")

    answers = await asyncio.gather(
        batcher.run(tx, writes("a")),
        batcher.run(tx, writes("b", fail=lost)),
        batcher.run(tx, writes("c")),
        return_exceptions=True,
    )

    assert answers == [lost, lost, lost]
    assert db.committed == []
    # And the next callers get a new group.
    assert await batcher.run(tx, writes("d")) == "d"
    assert db.committed == ["d"]


async def test_a_caller_cancelled_while_waiting_is_left_out(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=30.0, max_size=3, groups_in_flight=1)
    ran: list[str] = []

    def tracked(row: str) -> Callable[[UnitOfWork], Awaitable[str]]:
        async def work(uow: UnitOfWork) -> str:
            ran.append(row)
            return await writes(row)(uow)

        return work

    first = asyncio.create_task(batcher.run(tx, tracked("a")))
    gone = asyncio.create_task(batcher.run(tx, tracked("gone")))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(batcher.run(tx, tracked(r))) for r in ("b", "c")]

    assert await asyncio.gather(first, *rest) == ["a", "b", "c"]
    assert gone.cancelled()
    assert "gone" not in ran
    assert db.transactions == [["a", "b", "c"]]  # the cancelled one took no place in it


async def test_a_deadlocked_unit_runs_again_alone_after_its_group(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.05)
    tries: list[int] = []

    async def deadlocks_once(uow: UnitOfWork) -> str:
        tries.append(1)
        cast(FakeConn, uow.conn).write("x")
        if len(tries) == 1:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "x"

    answers = await asyncio.gather(
        batcher.run(tx, writes("a")), batcher.run(tx, deadlocks_once), batcher.run(tx, writes("c"))
    )

    assert answers == ["a", "x", "c"]
    assert db.transactions == [["a", "c"], ["x"]]


async def test_groups_run_side_by_side_up_to_the_limit(db: FakeDatabase, tx: Transactions) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.0, max_size=2, groups_in_flight=2)
    release = asyncio.Event()

    def slow(row: str) -> Callable[[UnitOfWork], Awaitable[str]]:
        async def work(uow: UnitOfWork) -> str:
            await release.wait()
            return await writes(row)(uow)

        return work

    tasks = [asyncio.create_task(batcher.run(tx, slow(f"r{i}"))) for i in range(8)]
    await asyncio.sleep(0.05)
    assert db.open_now == 2  # two groups open, the rest queued behind them
    release.set()
    await asyncio.gather(*tasks)

    assert db.most_open == 2
    assert sorted(db.committed) == [f"r{i}" for i in range(8)]
    await batcher.wait_idle()


async def test_each_unit_runs_in_its_callers_trace_context(tx: Transactions) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.05)
    seen: dict[str, object] = {}

    async def post(name: str) -> None:
        token = otel_context.attach(otel_context.set_value("caller", name))
        try:

            async def work(uow: UnitOfWork) -> None:
                seen[name] = otel_context.get_value("caller")

            await batcher.run(tx, work)
        finally:
            otel_context.detach(token)

    await asyncio.gather(post("ada"), post("bob"))

    assert seen == {"ada": "ada", "bob": "bob"}


def test_a_group_is_at_most_64_units() -> None:
    with pytest.raises(ValueError, match="max_size"):
        GroupCommit("t", max_size=65)


def batching(
    db: FakeDatabase, *, known: frozenset[str] = frozenset(), fail: BaseException | None = None
) -> Callable[[UnitOfWork, list[Any]], Awaitable[list[Any]]]:
    """A batch that writes every item's row in one go; an item in `known` is left to its
    unit (NOT_DONE); `fail` raises after writing (the savepoint must undo the rows)."""

    async def batch(uow: UnitOfWork, items: list[Any]) -> list[Any]:
        conn = cast(FakeConn, uow.conn)
        db.statements.append(f"batch of {len(items)}")
        for item in items:
            if item not in known:
                conn.write(f"batched-{item}")
        if fail is not None:
            raise fail
        return [NOT_DONE if item in known else f"batched-{item}" for item in items]

    return batch


async def test_a_group_s_items_are_written_by_one_batch_and_the_rest_run_alone(
    db: FakeDatabase, tx: Transactions
) -> None:
    batcher = GroupCommit("t", max_wait_seconds=0.05, batch=batching(db, known=frozenset("k")))
    before = units("batched")

    answers = await asyncio.gather(
        batcher.run(tx, writes("own-a"), item="a"),
        batcher.run(tx, writes("own-k"), item="k"),  # known: its own work writes it
        batcher.run(tx, writes("plain")),  # no item: always its own work
        batcher.run(tx, writes("own-b"), item="b"),
    )

    assert answers == ["batched-a", "own-k", "plain", "batched-b"]
    assert db.transactions == [["batched-a", "batched-b", "own-k", "plain"]]
    assert db.statements.count("batch of 3") == 1
    assert db.statements.count("SAVEPOINT group_unit") == 2  # only the units left over
    assert units("batched") - before == 2


async def test_a_batch_that_fails_is_undone_and_every_unit_runs_its_own_work(
    db: FakeDatabase, tx: Transactions
) -> None:
    broken = RuntimeError("a constraint the batch met")
    batcher = GroupCommit("t", max_wait_seconds=0.05, batch=batching(db, fail=broken))

    answers = await asyncio.gather(
        batcher.run(tx, writes("own-a"), item="a"), batcher.run(tx, writes("own-b"), item="b")
    )

    assert answers == ["own-a", "own-b"]
    assert db.transactions == [["own-a", "own-b"]]  # the batch's rows rolled back
    assert "ROLLBACK TO SAVEPOINT group_batch" in db.statements


async def test_a_lone_unit_with_an_item_runs_its_own_work(
    db: FakeDatabase, tx: Transactions
) -> None:
    """A batch of one would save nothing: the unit's work (which may use its item) runs."""
    batcher = GroupCommit("t", max_wait_seconds=0.0, batch=batching(db))
    assert await batcher.run(tx, writes("own"), item="x") == "own"
    assert db.statements == []
