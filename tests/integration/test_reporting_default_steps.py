"""A conversion report's default steps are the funnel's line: the exits the tracker places
after it (stalled, lost, recycled) are not steps, so "first to last step" ends on the last
stage, not on `lost`. Projected on a real PostgreSQL, read by the reports' own code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from funnel_contracts import Envelope
from funnel_contracts.examples import stage_changed
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.problems import Problem
from funnel_servicekit.unit_of_work import Outbox
from reporting.projection.consumer import handlers
from reporting.reports import service, store
from tests.integration.reporting_support import schema_pools

pytestmark = pytest.mark.integration

LINE = ("awareness", "interest", "desire", "action", "loyalty")
T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with schema_pools(fresh_dsn, ("reporting",), max_size=1) as made:
        yield made["reporting"]


def _moves(path: list[tuple[str, int]]) -> list[object]:
    lead, previous, out = uuid4(), None, []
    for i, (stage, position) in enumerate(path):
        out.append(
            stage_changed(
                lead_id=lead,
                from_stage=previous,
                to_stage=stage,
                to_stage_position=position,
                changed_at=T0 + timedelta(days=i),
            )
        )
        previous = stage
    return out


async def test_the_default_steps_leave_the_exits_out(pool: asyncpg.Pool) -> None:
    events = [
        *_moves([(s, i) for i, s in enumerate(LINE)]),  # bought and stayed
        *_moves([("awareness", 0), ("interest", 1), ("stalled", 5), ("lost", 6)]),
        *_moves([("awareness", 0), ("lost", 6), ("recycled", 7), ("awareness", 0)]),
    ]
    _, handle_batch = handlers(Outbox("reporting", "reporting"))
    deliveries = [Delivery("funnel.test", Envelope.of(e, source="it"), e) for e in events]
    async with pool.acquire() as conn:
        async with conn.transaction():
            await handle_batch(conn, deliveries)
        known = await store.funnel_stages(conn, "digital-sales")
        assert list(known) == [*LINE, "stalled", "lost", "recycled"]  # the data has them
        assert await service._steps(conn, "digital-sales", None) == list(LINE)
        # An exit is still a step when asked for by name.
        assert await service._steps(conn, "digital-sales", "awareness,lost") == [
            "awareness",
            "lost",
        ]
        with pytest.raises(Problem):
            await service._steps(conn, "digital-sales", "lost,awareness")
