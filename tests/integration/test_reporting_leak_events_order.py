"""The leaks table from funnel.report-events does not depend on the order the leaks of one
step are read in: each leak's events share its partition, but two leaks of a step do not, so
a rebuild may project a later leak's detection before an earlier leak's resolution."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from funnel_contracts import Envelope, EventData, LeakDetected, LeakResolved
from funnel_servicekit import migrations
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.unit_of_work import Outbox
from reporting.projection.consumer import handlers
from reporting.settings import MIGRATIONS

pytestmark = pytest.mark.integration

AT = datetime(2026, 10, 20, 4, tzinfo=UTC)
STEP = {"funnel_id": "digital-sales", "from_stage": "interest", "to_stage": "desire",
        "segment": "source:google"}  # fmt: skip
FOUND = {"window_days": 7, "baseline_rate": 0.5, "baseline_entered": 800,
         "baseline_converted": 400, "current_rate": 0.1, "current_entered": 200,
         "current_converted": 20, "p_value": 1e-12}  # fmt: skip
FIRST, SECOND = UUID(int=1, version=4), UUID(int=2, version=4)


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        yield conn
    finally:
        await conn.close()


def _partitions() -> tuple[list[EventData], list[EventData]]:
    """The first leak (found, then resolved) and the second (found after it), as two
    partitions would hold them."""
    first: list[EventData] = [
        LeakDetected(lead_id=FIRST, leak_id=FIRST, **STEP, **FOUND, detected_at=AT),
        LeakResolved(lead_id=FIRST, leak_id=FIRST, **STEP, baseline_rate=0.5,
                     current_rate=0.49, p_value=0.4, resolved_at=AT + timedelta(days=9)),
    ]  # fmt: skip
    second: list[EventData] = [
        LeakDetected(lead_id=SECOND, leak_id=SECOND, **STEP, **FOUND,
                     detected_at=AT + timedelta(days=20)),
    ]  # fmt: skip
    return first, second


async def _project(
    conn: asyncpg.Connection, schema: str, batches: Sequence[list[EventData]]
) -> None:
    _, handle_batch = handlers(Outbox(schema, "reporting"))
    await conn.execute(f"SET search_path TO {schema}")
    for batch in batches:
        deliveries = [
            Delivery("funnel.report-events", Envelope.of(e, source="it"), e) for e in batch
        ]
        async with conn.transaction():
            await handle_batch(conn, deliveries)


@pytest.mark.parametrize(
    "order", ["first partition first", "second partition first", "interleaved"]
)
async def test_both_leaks_of_a_step_come_back_whatever_the_reading_order(
    conn: asyncpg.Connection, order: str
) -> None:
    first, second = _partitions()
    batches = {
        "first partition first": [first, second],
        "second partition first": [second, first],
        "interleaved": [[first[0]], second, [first[1]]],
    }[order]
    schema = "r_" + order.replace(" ", "_")
    await migrations.apply(conn, schema, MIGRATIONS)
    await _project(conn, schema, batches)
    rows = await conn.fetch(
        f"SELECT leak_id, opened_at, resolved_at FROM {schema}.leaks ORDER BY opened_at"  # noqa: S608
    )
    assert [(r["leak_id"], r["opened_at"], r["resolved_at"]) for r in rows] == [
        (FIRST, AT, AT + timedelta(days=9)),
        (SECOND, AT + timedelta(days=20), None),
    ]
