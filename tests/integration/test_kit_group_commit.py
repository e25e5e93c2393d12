"""Group commit on the real PostgreSQL: a unit whose statement fails (a unique violation, an
error that aborts the transaction) is rolled back to its savepoint and the units after it
still run and commit in the same transaction; a unit PostgreSQL picks as a deadlock's
victim is run again alone, and every row and event is written exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from funnel_devstack.stack import Stack
from funnel_servicekit.group_commit import GroupCommit
from funnel_servicekit.unit_of_work import Outbox, Transactions, UnitOfWork
from tests.integration.kit_support import Db, isolated_db, stage_changed

pytestmark = pytest.mark.integration
LEAD = uuid.uuid4()


@pytest.fixture
async def db(infra: Stack) -> AsyncIterator[Db]:
    async with isolated_db(infra.postgres.dsn) as db:
        await db.pool.execute("CREATE TABLE people (email text PRIMARY KEY)")
        await db.pool.execute("CREATE TABLE accounts (id int PRIMARY KEY, n int NOT NULL)")
        await db.pool.execute("INSERT INTO accounts VALUES (1, 0), (2, 0)")
        yield db


def person(email: str, n: int) -> Callable[[UnitOfWork], Awaitable[str]]:
    async def work(uow: UnitOfWork) -> str:
        await uow.conn.execute("INSERT INTO people VALUES ($1)", email)
        await uow.emit(stage_changed(LEAD, n))
        return email

    return work


async def test_a_failing_statement_is_rolled_back_alone_and_the_group_goes_on(db: Db) -> None:
    tx = Transactions(db.pool, Outbox(db.schema, "it-group"))
    group = GroupCommit("it", max_wait_seconds=0.2, groups_in_flight=1)

    async def aborts(uow: UnitOfWork) -> str:
        await uow.conn.execute("INSERT INTO people VALUES ('zero@example.com')")
        await uow.emit(stage_changed(LEAD, 99))
        await uow.conn.execute("SELECT 1 / 0")  # aborts the transaction up to the savepoint
        return "never"

    answers = await asyncio.gather(
        group.run(tx, person("a@example.com", 1)),
        group.run(tx, person("a@example.com", 2)),  # the same key: a unique violation
        group.run(tx, aborts),
        group.run(tx, person("b@example.com", 3)),  # after two failures in the same transaction
        return_exceptions=True,
    )

    assert answers[0] == "a@example.com"
    assert isinstance(answers[1], asyncpg.UniqueViolationError)
    assert isinstance(answers[2], asyncpg.DivisionByZeroError)
    assert answers[3] == "b@example.com"
    rows = await db.pool.fetch("SELECT email FROM people ORDER BY email")
    assert [r["email"] for r in rows] == ["a@example.com", "b@example.com"]
    assert await db.count("outbox") == 2  # the failed units' events went with them


async def test_a_deadlock_victim_in_a_group_runs_again_alone_exactly_once(db: Db) -> None:
    tx = Transactions(db.pool, Outbox(db.schema, "it-group"))
    group = GroupCommit("it", max_wait_seconds=0.2, groups_in_flight=1)
    both_hold_one = asyncio.Barrier(2)
    attempts: list[str] = []

    async def grouped(uow: UnitOfWork) -> str:
        attempts.append("grouped")
        await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = 1")
        await uow.emit(stage_changed(LEAD, 1))
        if len(attempts) == 1:
            await both_hold_one.wait()
        # Waits first, so its backend's deadlock check fires first: it is the victim.
        await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = 2")
        return "grouped"

    async def alone(uow: UnitOfWork) -> str:
        await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = 2")
        await both_hold_one.wait()
        await asyncio.sleep(0.3)
        await uow.conn.execute("UPDATE accounts SET n = n + 1 WHERE id = 1")
        return "alone"

    answers = await asyncio.wait_for(
        asyncio.gather(
            group.run(tx, person("c@example.com", 2)),  # the victim's group companion
            group.run(tx, grouped),
            tx.run(alone),
        ),
        60,
    )

    assert answers == ["c@example.com", "grouped", "alone"]
    assert attempts == ["grouped", "grouped"]  # undone once in its group, then run alone
    rows = dict(await db.pool.fetch("SELECT id, n FROM accounts"))  # type: ignore[arg-type]
    assert rows == {1: 2, 2: 2}
    assert await db.count("people") == 1
    assert await db.count("outbox") == 2  # the companion's and the grouped unit's, once each
