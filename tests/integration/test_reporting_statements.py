"""Reporting's projection: what a batch costs PostgreSQL in statements (decision 0076).

Batches run through the real batch handler on a real PostgreSQL, in a transaction as the
inbox runs it, with asyncpg's query logger counting the statements the handler sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from funnel_contracts import (
    Envelope,
    EventData,
    LeadOwnerChanged,
    TouchClicked,
    TouchOpened,
    TouchSent,
    examples,
)
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.unit_of_work import Outbox
from reporting.projection.consumer import handlers
from tests.integration.reporting_support import schema_pools

STAGES = ("awareness", "interest", "consideration")


@pytest.fixture
async def pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with schema_pools(fresh_dsn, ("reporting",), max_size=2) as made:
        yield made["reporting"]


async def _batch(pool: asyncpg.Pool, events: Sequence[EventData]) -> list[str]:
    """The events as one batch through the projection's batch handler; the statements sent
    (asyncpg's own type introspection, once per connection and type, left out)."""
    _, handle_batch = handlers(Outbox("reporting", "reporting"))
    deliveries = [Delivery(e.topic, Envelope.of(e, source="test"), e) for e in events]
    sent: list[str] = []

    def logger(query: LoggedQuery) -> None:
        if "typeinfo_tree" not in query.query and "set_config" not in query.query:
            sent.append(query.query)

    async with pool.acquire() as conn, conn.transaction():
        conn.add_query_logger(logger)
        try:
            await handle_batch(conn, deliveries)
        finally:
            conn.remove_query_logger(logger)
    return sent


def _story(lead: UUID, at: datetime, positions: Sequence[int] = (0, 1, 2)) -> list[EventData]:
    """A lead captured, moved through three stages, and a page view."""
    events: list[EventData] = [examples.lead_captured(lead_id=lead, captured_at=at)]
    previous = None
    for i, (stage, position) in enumerate(zip(STAGES, positions, strict=True)):
        events.append(
            examples.stage_changed(
                lead_id=lead, from_stage=previous, to_stage=stage, to_stage_position=position,
                changed_at=at + timedelta(minutes=i),
            )
        )  # fmt: skip
        previous = stage
    events.append(
        examples.activity_recorded(
            lead_id=lead, activity_type="page_view", occurred_at=at + timedelta(minutes=5)
        )
    )
    return events


async def test_a_batch_is_two_statements_the_lock_and_one_write(pool: asyncpg.Pool) -> None:
    """The leads' states locked and read, then the deltas of every table, the stage
    positions, the states and the timeline items in one statement; before, each of those
    was a statement of its own (9 for these batches)."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    await _batch(pool, _story(uuid4(), at))  # asyncpg learns the statements' types
    a, b, c = uuid4(), uuid4(), uuid4()
    first = await _batch(pool, _story(a, at))
    assert len(first) == 2, first
    second = await _batch(pool, [*_story(b, at), *_story(c, at + timedelta(minutes=1))])
    assert len(second) == 2, second
    counts = dict(
        await pool.fetch("SELECT stage, leads FROM stage_counts WHERE funnel_id = 'digital-sales'")
    )
    assert counts == {"consideration": 4}  # passed through within a batch: no row
    positions = dict(
        await pool.fetch(
            "SELECT stage, position FROM funnel_stages WHERE funnel_id = 'digital-sales'"
        )
    )
    assert positions == {"awareness": 0, "interest": 1, "consideration": 2}
    for lead in (a, b, c):
        items = await pool.fetchval(
            "SELECT count(*) FROM timeline_timeline WHERE lead_id = $1", lead
        )
        assert items == 5  # the capture, three stage changes, the page view
    assert await pool.fetchval("SELECT count(*) FROM lead_states WHERE state <> '{}'") == 4
    entered = await pool.fetchval("SELECT count(*) FROM entry_counts_queue")
    assert entered > 0  # the conversion deltas queued for the fold


async def test_a_stage_position_is_written_only_when_it_changes(pool: asyncpg.Pool) -> None:
    """A batch telling the positions already stored leaves their rows alone (no new row
    version); one telling a new position (a funnel version that moved a stage) writes it."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    await _batch(pool, _story(uuid4(), at))
    query = "SELECT stage, xmin::text FROM funnel_stages ORDER BY stage"
    before = await pool.fetch(query)
    await _batch(pool, _story(uuid4(), at))
    assert await pool.fetch(query) == before
    await _batch(pool, _story(uuid4(), at, positions=(0, 1, 4)))
    positions = dict(await pool.fetch("SELECT stage, position FROM funnel_stages"))
    assert positions == {"awareness": 0, "interest": 1, "consideration": 4}
    after = dict(await pool.fetch(query))
    assert [after[s] == dict(before)[s] for s in STAGES] == [True, True, False]


async def test_locking_a_known_lead_writes_no_row_version(pool: asyncpg.Pool) -> None:
    """A batch that does not change a lead's state (an owner change: the timeline only)
    locks its row without writing it (before, the lock was an upsert: a new row version of
    every lead in every batch, then a second one for its new state)."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    lead = uuid4()
    await _batch(pool, _story(lead, at))
    query = "SELECT xmin::text, state FROM lead_states WHERE lead_id = $1"
    before = await pool.fetchrow(query, lead)
    owner = LeadOwnerChanged(
        lead_id=lead, funnel_id="digital-sales", owner="ana", actor="ana", changed_at=at
    )
    sent = await _batch(pool, [owner])
    assert len(sent) == 2, sent  # the lock, the timeline item
    assert await pool.fetchrow(query, lead) == before
    kinds = await pool.fetch("SELECT kind FROM timeline_timeline WHERE lead_id = $1", lead)
    assert len(kinds) == 6


@pytest.mark.parametrize("order", ["send first", "open first", "one batch"])
async def test_opens_and_clicks_learn_their_sends_playbook_in_the_write(
    pool: asyncpg.Pool, order: str
) -> None:
    """Whichever of a touch's send and its open and click arrives first, in one batch or in
    two, the responses end up with the send's playbook and channel, and no batch sends a
    statement for it (before, an UPDATE after the items' insert in every batch with a
    touch event: 3 statements)."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    lead, touch = uuid4(), uuid4()
    await _batch(pool, _story(lead, at))
    sent = TouchSent(
        lead_id=lead, touch_id=touch, playbook="nurture", channel="email", template="t1",
        funnel_id="digital-sales", stage="consideration", sent_at=at + timedelta(minutes=10),
    )  # fmt: skip
    responses: list[EventData] = [
        TouchOpened(lead_id=lead, touch_id=touch, opened_at=at + timedelta(minutes=11)),
        TouchClicked(
            lead_id=lead, touch_id=touch, url="https://example.com/p",
            clicked_at=at + timedelta(minutes=12),
        ),
    ]  # fmt: skip
    batches = {
        "send first": [[sent], responses],
        "open first": [responses, [sent]],
        "one batch": [[*responses, sent]],
    }[order]
    for batch in batches:
        statements = await _batch(pool, batch)
        assert len(statements) == 2, statements  # the lock, the write
    rows = await pool.fetch(
        "SELECT kind, fields FROM timeline_timeline WHERE lead_id = $1 AND kind LIKE 'touch_%'",
        lead,
    )
    told = {r["kind"]: (r["fields"]["playbook"], r["fields"]["channel"]) for r in rows}
    assert told == {
        k: ("nurture", "email") for k in ("touch_sent", "touch_opened", "touch_clicked")
    }
