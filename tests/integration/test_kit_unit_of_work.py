"""Units of work on the real PostgreSQL: state and events commit together or not at all, and
a transaction PostgreSQL undid for a deadlock runs again whole, its events written once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from funnel_devstack.stack import Stack
from funnel_servicekit.unit_of_work import Outbox, Transactions, UnitOfWork
from tests.integration.kit_support import Db, isolated_db, stage_changed

pytestmark = pytest.mark.integration
LEAD = uuid.uuid4()


@pytest.fixture
async def db(infra: Stack) -> AsyncIterator[Db]:
    async with isolated_db(infra.postgres.dsn) as db:
        await db.pool.execute("CREATE TABLE accounts (id int PRIMARY KEY, n int NOT NULL)")
        await db.pool.execute("INSERT INTO accounts VALUES (1, 0), (2, 0)")
        yield db


async def test_a_failed_unit_of_work_leaves_neither_state_nor_events(db: Db) -> None:
    tx = Transactions(db.pool, Outbox(db.schema, "it-uow"))

    async def refused(uow: UnitOfWork) -> None:
        await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = 1")
        await uow.emit(stage_changed(LEAD, 1))
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await tx.run(refused)
    assert await db.count("accounts", "n > 0") == 0
    assert await db.count("outbox") == 0
    async with tx() as uow:
        await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = 1")
        await uow.emit(stage_changed(LEAD, 1))
    assert await db.count("accounts", "n = 1") == 1
    assert await db.count("outbox") == 1


async def test_a_deadlocked_unit_of_work_runs_again_whole(db: Db) -> None:
    tx = Transactions(db.pool, Outbox(db.schema, "it-uow"))
    both_hold_one = asyncio.Barrier(2)
    attempts: list[str] = []

    def crossing(first: int, second: int, name: str):  # type: ignore[no-untyped-def]
        async def work(uow: UnitOfWork) -> str:
            attempts.append(name)
            await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = $1", first)
            await uow.emit(stage_changed(LEAD, len(attempts)))
            if attempts.count(name) == 1:
                await both_hold_one.wait()  # each holds one row and wants the other's
            await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = $1", second)
            return name

        return work

    done = await asyncio.wait_for(
        asyncio.gather(tx.run(crossing(1, 2, "a")), tx.run(crossing(2, 1, "b"))), 30
    )
    assert sorted(done) == ["a", "b"]
    assert len(attempts) == 3  # PostgreSQL undid one of them once; it ran again
    rows = dict(await db.pool.fetch("SELECT id, n FROM accounts"))  # type: ignore[arg-type]
    assert rows == {1: 2, 2: 2}  # each committed exactly once
    assert await db.count("outbox") == 2  # the undone attempt's event went with it
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await Transactions(db.pool, Outbox(db.schema, "it-uow")).run(_always_deadlocks)


async def _always_deadlocks(uow: UnitOfWork) -> None:
    raise asyncpg.DeadlockDetectedError("deadlock detected")
