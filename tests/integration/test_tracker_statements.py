"""The tracker's consumer: what a batch costs PostgreSQL in statements (decision 0077), and
the published funnel versions it keeps between batches, read again after a publish.

Each batch runs through the real batch handler on a real PostgreSQL, in a transaction as the
inbox runs it, with asyncpg's query logger counting the statements the handler sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from asyncpg.connection import LoggedQuery

from funnel_contracts import Envelope, EventData, StageChanged
from funnel_devstack.stack import Stack
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.unit_of_work import Outbox, Transactions
from stage_tracker.moves.consumer import EventHandler
from stage_tracker.timers.service import fire_due
from tests.integration.tracker_harness import Harness, activity, captured, tracker_harness

PUBLISHED_READ = "FROM funnel_definitions WHERE status = 'published' ORDER BY"


def cooling(points: int) -> str:
    return f"""\
id: cooling
name: Cooling
stages:
  - name: new
  - name: warm-up
    enter_when:
      - event: pricing_viewed
scoring:
  engagement: {{page_view: {points}}}
"""


@pytest.fixture
async def h(infra: Stack, fresh_dsn: str) -> AsyncIterator[Harness]:
    async with tracker_harness(fresh_dsn, infra.kafka_bootstrap) as hh:
        yield hh


async def _batch(h: Harness, events: Sequence[EventData]) -> list[str]:
    """The events as one batch through the consumer's batch handler; the statements sent."""
    handler = EventHandler(h.registry, "tracker", "stage-tracker")
    deliveries = [Delivery(e.topic, Envelope.of(e, source="test"), e) for e in events]
    sent: list[str] = []
    async with h.pool.acquire() as conn, conn.transaction():

        def logger(query: LoggedQuery) -> None:
            if "typeinfo_tree" not in query.query:  # asyncpg's own, once per connection
                sent.append(query.query)

        conn.add_query_logger(logger)
        try:
            await handler.batch(conn, deliveries)
        finally:
            conn.remove_query_logger(logger)
    return sent


def _journey(lead: UUID, funnel: str = "digital-sales") -> list[EventData]:
    at = datetime.now(UTC) - timedelta(minutes=5)
    return [
        captured(lead, funnel, at),
        activity(lead, "page_view", at + timedelta(seconds=1)),
        activity(lead, "pricing_viewed", at + timedelta(seconds=2)),
    ]


async def test_a_batch_is_four_statements_with_the_published_versions_kept(h: Harness) -> None:
    """lock, read (states, signals, erasures, the published stamp), the writes, the outbox:
    the handler sent 9 before (two more reads, three more writes, and the published versions
    read again in every batch with a capture)."""
    warm_up = await _batch(h, _journey(uuid4()))  # the registry reads digital-sales once
    assert sum(PUBLISHED_READ in q for q in warm_up) == 1
    a, b, c = uuid4(), uuid4(), uuid4()
    first = await _batch(h, _journey(a))
    assert len(first) == 4, first
    second = await _batch(
        h, [*_journey(b), *_journey(c), activity(a, "page_view", datetime.now(UTC))]
    )
    assert len(second) == 4, second
    assert not any(PUBLISHED_READ in q for q in first + second)
    assert not any("FOR UPDATE" in q for q in first + second)  # advisory locks only
    for lead, signals in ((a, 4), (b, 3), (c, 3)):
        assert await h.count("lead_stages", lead) == 1
        assert await h.count("lead_signals", lead) == signals
        assert await h.count("transitions", lead) == 3  # entered, and two moves
    assert len(await h.emitted(StageChanged.event_type)) == 3 * 4


async def test_a_publish_is_seen_by_the_next_batch(h: Harness) -> None:
    """The registry keeps the published versions under a stamp read with the leads: a new
    funnel, and a new version of it, are entered by the next capture (a kept list would
    refuse the funnel, then put the lead in v1)."""
    await _batch(h, _journey(uuid4()))  # the published versions read and kept
    async with h.api() as client:
        for version, points in ((1, 3), (2, 9)):
            draft = await client.post(
                "/v1/funnels/cooling/drafts", json={"source": cooling(points)}
            )
            assert draft.status_code == 201, draft.text
            published = await client.post(f"/v1/funnels/cooling/versions/{version}/publish")
            assert published.status_code == 200, published.text
            lead = uuid4()
            at = datetime.now(UTC)
            sent = await _batch(h, [captured(lead, "cooling", at), activity(lead, "page_view", at)])
            assert sum(PUBLISHED_READ in q for q in sent) == 1  # read again: the stamp changed
            row = await h.pool.fetchrow(
                "SELECT funnel_version, engagement_score FROM lead_stages WHERE lead_id = $1",
                lead,
            )
            assert (row["funnel_version"], row["engagement_score"]) == (version, float(points))
    again = await _batch(h, _journey(uuid4()))
    assert not any(PUBLISHED_READ in q for q in again)  # kept again


async def test_a_lead_someone_is_changing_waits_for_its_stall_timer(h: Harness) -> None:
    """The consumer holds a lead by its advisory lock alone (no row lock): the stall timer
    tries that lock and leaves a lead held by another transaction for its next round."""
    lead = uuid4()
    await _batch(h, _journey(lead)[:1])
    later = datetime.now(UTC) + timedelta(days=90)  # its stage's stall timer is due
    assert await h.pool.fetchval("SELECT timer_due_at FROM lead_stages WHERE lead_id = $1", lead)
    tx = Transactions(h.pool, Outbox("tracker", "stage-tracker"))
    async with h.pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock(hashtext('lead:' || $1))", str(lead))
        assert await fire_due(tx, h.registry, later, 10) == 0
        assert await h.count("transitions", lead) == 1
    assert await fire_due(tx, h.registry, later, 10) == 1
    assert await h.count("transitions", lead) == 2
