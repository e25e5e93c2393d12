"""The projection queues its conversion deltas and the fold moves them into the quarter-hour
tables and their rollups (docs/decisions/0067), on the real PostgreSQL: every report answer is
the same with every delta queued, some folded and all folded, and equals the oracle's; once
folded, the ten conversion tables hold exactly the rows the projection wrote in its own
transaction before; and while the fold loop runs beside the projection, every answer after
every batch equals the answer of tables written in the projection's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any

import asyncpg
import pytest

from bench.reporting_dataset import FUNNEL, STAGES, generate
from funnel_contracts import Envelope, EventData
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.unit_of_work import Outbox
from reporting.domain.slots import Cohort
from reporting.projection import store
from reporting.projection.consumer import handlers
from reporting.projection.worker import Fold
from reporting.reports.models import Period
from reporting.reports.store import conversion_counts, time_to_convert
from tests.integration.reporting_oracle import Oracle
from tests.integration.reporting_support import schema_pools

pytestmark = pytest.mark.integration

SCHEMAS = ("queued", "inline")
CONVERSION_TABLES = tuple(
    name for table, rollups in store.ROLLUPS.items() for name in (table, *(r for r, _ in rollups))
)
# Whole months in UTC, and a period with quarter-hour edges (India) and hour edges (Los Angeles)
# starting mid-history: every level of the slot plan and the "bucket minus the rest" slots.
PERIODS = (
    Period(date(2026, 9, 1), date(2026, 10, 31), "UTC"),
    Period(date(2026, 9, 9), date(2026, 10, 3), "Asia/Kolkata"),
    Period(date(2026, 9, 12), date(2026, 9, 25), "America/Los_Angeles"),
)
QUESTIONS: tuple[tuple[Period, str, Cohort], ...] = tuple(
    (period, dim, cohort)
    for period in PERIODS
    for dim in ("all", "first_campaign", "last_source")
    for cohort in ("none", "week")
)


@pytest.fixture
async def pools(fresh_dsn: str) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    async with schema_pools(fresh_dsn, SCHEMAS, max_size=3) as made:
        yield made


def _inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements the projection ran before 0067: each rolled-up table's deltas upserted
    into its quarter-hour rows and every rollup in the projection's own transaction."""
    monkeypatch.setattr(store, "INLINE", set(store.ROLLUPS))


async def _project(pool: asyncpg.Pool, schema: str, batch: Sequence[EventData]) -> None:
    _, handle_batch = handlers(Outbox(schema, "reporting"))
    deliveries = [Delivery("funnel.test", Envelope.of(e, source="it"), e) for e in batch]
    async with pool.acquire() as conn, conn.transaction():
        await handle_batch(conn, deliveries)


async def _fold(pool: asyncpg.Pool, limit: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await store.fold_queued(conn, limit)


async def _answer(conn: asyncpg.Connection, question: tuple[Period, str, Cohort]) -> Any:
    period, dim, cohort = question
    entered, reached = await conversion_counts(
        conn,
        FUNNEL,
        list(STAGES),
        period,
        window_days=14,
        cohort=cohort,
        dim=dim,
    )
    return entered, reached


async def _answers(pool: asyncpg.Pool) -> list[Any]:
    async with pool.acquire() as conn:
        out = [await _answer(conn, q) for q in QUESTIONS]
        for period in PERIODS:
            out.append(await time_to_convert(conn, FUNNEL, "interest", "action", period))
    return out


async def _count(pool: asyncpg.Pool, query: str) -> int:
    return int(await pool.fetchval(query))


async def _differences(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows of a conversion table in one schema and not in the other (zero rows are none)."""
    out = {}
    for table in CONVERSION_TABLES:
        spec = store.TABLES[table.split("_hourly")[0].split("_6h")[0].split("_daily")[0]
                            .split("_weekly")[0]]  # fmt: skip
        nonzero = " OR ".join(f"{c} <> 0" for c, _ in spec.values)
        out[table] = await _count(
            pool,
            f"""SELECT count(*) FROM (
                (SELECT * FROM queued.{table} WHERE {nonzero}
                 EXCEPT SELECT * FROM inline.{table} WHERE {nonzero})
                UNION ALL
                (SELECT * FROM inline.{table} WHERE {nonzero}
                 EXCEPT SELECT * FROM queued.{table} WHERE {nonzero})) d""",  # noqa: S608
        )
    return out


def _batches(events: Sequence[EventData], size: int) -> list[Sequence[EventData]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def test_answers_are_the_same_queued_half_folded_and_folded(
    pools: dict[str, asyncpg.Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = generate(150, seed=11).events
    batches = _batches(events, 40)
    for batch in batches:
        await _project(pools["queued"], "queued", batch)
    queued = pools["queued"]
    # Everything queued, nothing in the tables yet: one queue row per batch that moved a lead.
    assert await _count(queued, "SELECT count(*) FROM entry_counts_queue") > len(batches) // 2
    assert await _count(queued, "SELECT count(*) FROM pair_conversions_queue") > len(batches) // 2
    for table in CONVERSION_TABLES:
        assert await _count(queued, f"SELECT count(*) FROM {table}") == 0  # noqa: S608
    unfolded = await _answers(queued)

    # The answers are the oracle's (not vacuous: leads entered and converted).
    oracle = Oracle(events)
    for period in PERIODS:
        expected = oracle.conversion(STAGES, period.start, period.end, period.time_zone, 14)
        entered, reached = unfolded[QUESTIONS.index((period, "all", "none"))]
        ((_, got_entered),) = entered.items()
        got = [got_entered] + [
            sum(n for (_, _, stage), n in reached.items() if stage == s) for s in STAGES[1:]
        ]
        assert [got] == list(expected.values())
        assert got[0] > 20
        assert got[1] > 0

    assert await _fold(queued, 3) == 3  # some folded, some still queued
    assert await _count(queued, "SELECT count(*) FROM entry_counts_queue") > 0
    assert await _count(queued, "SELECT count(*) FROM entry_counts_weekly") > 0
    assert await _answers(queued) == unfolded
    while await _fold(queued, 5):
        pass
    assert await _count(queued, "SELECT count(*) FROM entry_counts_queue") == 0
    assert await _count(queued, "SELECT count(*) FROM pair_conversions_queue") == 0
    assert await _answers(queued) == unfolded

    # The folded tables are the rows the projection wrote in its own transaction before.
    _inline(monkeypatch)
    for batch in batches:
        await _project(pools["inline"], "inline", batch)
    assert await _count(pools["inline"], "SELECT count(*) FROM entry_counts_queue") == 0
    assert await _differences(queued) == dict.fromkeys(CONVERSION_TABLES, 0)
    assert await _count(queued, "SELECT count(*) FROM pair_conversions_weekly") > 10
    assert await _answers(pools["inline"]) == unfolded


async def test_answers_while_the_fold_loop_runs_beside_the_projection(
    pools: dict[str, asyncpg.Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = generate(100, seed=17).events
    fold = Fold(pools["queued"], schema="queued", source="reporting", poll_seconds=0.005)
    fold.batch_size = 2  # several folds per batch of answers, at any point
    task = asyncio.create_task(fold.run())
    folded = 0
    try:
        for batch in _batches(events, 30):
            await _project(pools["queued"], "queued", batch)
            with monkeypatch.context() as inline:
                _inline(inline)
                await _project(pools["inline"], "inline", batch)
            assert await _answers(pools["queued"]) == await _answers(pools["inline"])
            folded += await _count(pools["queued"], "SELECT count(*) FROM entry_counts_daily")
    finally:
        fold.stop()
        await asyncio.wait_for(task, 30)
    assert folded > 0  # the loop folded while batches came in
    while await _fold(pools["queued"], 64):
        pass
    assert await _differences(pools["queued"]) == dict.fromkeys(CONVERSION_TABLES, 0)
