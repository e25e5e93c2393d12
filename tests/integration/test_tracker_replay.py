"""The tracker's real consumer on real topics: dead letters, and a rebuild that is exact.

Events are produced through the contracts' encode() onto the contract topics of a private
broker, as lead-intake and the notifier will produce them. The tracker runs as the service
does: the batch consumer, and the outbox relay (its own commands go back through Kafka).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from funnel_contracts import EventData, LeadErased
from funnel_contracts.topics import LEAD_EVENTS, dead_letter_topic
from funnel_devstack.stack import Stack
from funnel_servicekit.db import create_pool
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.moves.consumer import TOPICS, EventHandler
from stage_tracker.rebuild import rebuild
from stage_tracker.settings import TrackerSettings
from stage_tracker.timers.worker import StallTimers
from tests.integration.tracker_harness import (
    ADMIN_KEY,
    HISTORY,
    STATE,
    Harness,
    activity,
    captured,
    journeys,
    produce,
    running_tracker,
    tracker_database,
    until_count,
)

pytestmark = pytest.mark.integration


async def test_an_unknown_funnel_goes_to_the_dead_letter_topic_and_the_rest_moves_on(
    module_infra: Stack,
) -> None:
    dsn = await tracker_database(module_infra)
    bad, good = uuid4(), uuid4()
    await produce(module_infra, [captured(bad, funnel_id="no-such-funnel"), captured(good)])
    async with running_tracker(module_infra, dsn, "tracker-dlq") as pool:
        await until_count(pool, "SELECT count(*) FROM lead_stages", 1)
        await until_count(pool, "SELECT count(*) FROM dead_letters", 1)
        assert await pool.fetchval("SELECT lead_id FROM lead_stages") == good
    consumer = AIOKafkaConsumer(
        dead_letter_topic(LEAD_EVENTS),
        bootstrap_servers=module_infra.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    headers = dict(record.headers)
    assert record.key == str(bad).encode()
    assert b"unknown funnel 'no-such-funnel'" in headers["dlq_error"]
    assert headers["dlq_consumer_group"] == b"tracker-dlq"


ERASED = "SELECT lead_id, erased_at FROM erased_leads ORDER BY lead_id"
DEFINITIONS = """SELECT funnel_id, version, status, format, source, created_by, created_at,
                        published_at
                 FROM funnel_definitions ORDER BY funnel_id, version"""


SHOWROOM_V2 = """\
id: digital-sales
name: Digital sales, with a showroom
stages:
  - name: awareness
  - name: interest
    enter_when:
      - event: page_view
  - name: showroom
    enter_when:
      - event: showroom_visit
  - name: action
    enter_when:
      - event: purchase_completed
"""
COMMANDS_IN = "SELECT count(*) FROM inbox WHERE event_type = 'funnel.stage.move-requested.v1'"


async def _people_and_timers(
    stack: Stack, dsn: str, pool: asyncpg.Pool, leads: list[UUID]
) -> tuple[list[UUID], list[UUID], int]:
    """After the events: a v2 of digital-sales, manual moves (within v1 and to v2), captures
    into v2, erasures with a straggler, stall timers (stalled, then lost) and a comeback.
    Returns (new leads, erased leads, commands made)."""
    produced = await pool.fetchval("SELECT count(*) FROM inbox WHERE source = 'replay-test'")

    async def produce_and_wait(events: list[EventData]) -> None:
        nonlocal produced
        await produce(stack, events, source="replay-test")
        produced += len(events)
        await until_count(pool, "SELECT count(*) FROM inbox WHERE source = 'replay-test'", produced)

    settings = TrackerSettings(
        database_url=dsn, kafka_bootstrap_servers=stack.kafka_bootstrap, admin_api_key=ADMIN_KEY
    )
    commands = 0
    async with Harness(pool, settings).api() as api:
        draft = await api.post(
            "/v1/funnels/digital-sales/drafts", json={"format": "yaml", "source": SHOWROOM_V2}
        )
        assert draft.status_code == 201, draft.text
        published = await api.post("/v1/funnels/digital-sales/versions/2/publish")
        assert published.status_code == 200, published.text
        # By hand: digital-sales leads to v2's showroom, the others one step on in their line.
        moved = {"v2": 0, "v1": 0}
        for i, lead in enumerate(leads[:12]):
            journey = (await api.get(f"/v1/leads/{lead}/journey")).json()
            if journey["funnel_id"] == "digital-sales" and journey["current_stage"] != "lost":
                body = {"to_stage": "showroom", "funnel_version": 2}
            elif journey["funnel_id"] == "b2b-sales-cycle":
                body = {"to_stage": "closing"}
            else:
                body = {"to_stage": "decision"}
            response = await api.post(
                f"/v1/leads/{lead}/transitions",
                json={**body, "reason": f"call {i}", "actor": "ana"},
            )
            assert response.status_code in (201, 409), response.text
            if response.status_code == 201:
                commands += 1
                moved["v2" if "funnel_version" in body else "v1"] += 1
        assert moved["v2"] >= 2, moved
        assert moved["v1"] >= 2, moved
    await until_count(pool, COMMANDS_IN, commands)  # read back through the real topic

    newcomers = [uuid4() for _ in range(4)]
    now = datetime.now(UTC).replace(microsecond=0)
    await produce_and_wait([captured(lead, at=now) for lead in newcomers])  # into v2
    await produce_and_wait([activity(lead, "showroom_visit", now) for lead in newcomers[:2]])

    erased = [leads[5], leads[13], newcomers[3]]
    await produce_and_wait(
        [LeadErased(lead_id=lead, request_id=uuid4(), erased_at=now) for lead in erased]
    )
    await produce_and_wait([activity(erased[0], "purchase_completed", now)])  # a straggler

    timers = StallTimers(pool, FunnelRegistry(), schema="tracker", source="stage-tracker",
                         poll_seconds=1, clock=lambda: now + timedelta(days=40))  # fmt: skip
    stalled = await timers.fire_due()
    timers.clock = lambda: now + timedelta(days=80)
    lost = await timers.fire_due()
    assert stalled >= 3, stalled
    assert lost >= 3, lost
    commands += stalled + lost
    await until_count(pool, COMMANDS_IN, commands)
    back = await pool.fetchval("SELECT lead_id FROM lead_stages WHERE stage = 'lost' LIMIT 1")
    await produce_and_wait([activity(back, "page_view", now + timedelta(days=90))])  # recycled
    return newcomers, erased, commands


async def test_rebuilding_from_the_topics_into_an_empty_database_gives_the_same_states(
    module_infra: Stack,
) -> None:
    leads = [uuid4() for _ in range(24)]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    plans = [journeys(lead, i, t0 + timedelta(seconds=i)) for i, lead in enumerate(leads)]
    live_dsn = await tracker_database(module_infra)
    async with running_tracker(module_infra, live_dsn, "tracker-live") as pool:
        produced = 0
        for r in range(max(len(p) for p in plans)):
            batch = [e for plan in plans if r < len(plan) for e in plan[r]]
            await produce(module_infra, batch, source="replay-test")
            produced += len(batch)
            # The next round only once this one is in: live, people act seconds apart.
            await until_count(
                pool, "SELECT count(*) FROM inbox WHERE source = 'replay-test'", produced
            )
        newcomers, erased, commands = await _people_and_timers(module_infra, live_dsn, pool, leads)
        consumed = await pool.fetchval("SELECT count(*) FROM inbox")
        live_state = [tuple(r) for r in await pool.fetch(STATE)]
        live_history = [tuple(r) for r in await pool.fetch(HISTORY)]
        live_erased = [tuple(r) for r in await pool.fetch(ERASED)]
        definitions = await pool.fetch(DEFINITIONS)
        dead_letters = await pool.fetchval("SELECT count(*) FROM dead_letters")

    # (The topics also hold the module's other tests' leads: this test's are checked.)
    live_leads = {r[0] for r in live_state}
    assert set(leads + newcomers) - set(erased) <= live_leads
    assert not set(erased) & live_leads
    assert {r[0] for r in live_erased} == set(erased)
    assert {"action", "lost", "showroom"} <= {r[3] for r in live_state}
    assert {"stalled", "lost", "recycled", "showroom"} <= {r[4] for r in live_history}
    assert {r[2] for r in live_state if r[1] == "digital-sales"} == {1, 2}
    by_command = [r for r in live_history if r[8] == "funnel.stage.move-requested.v1"]
    assert sum(r[10] == "admin" for r in by_command) >= 3  # by hand (the key's name)
    assert sum(r[10] is None for r in by_command) >= 6  # by the stall timer
    assert len(by_command) <= commands  # erased leads took theirs with them
    assert len(live_history) > 3 * len(leads)

    rebuilt_dsn = await tracker_database(module_infra)
    pool = await create_pool(rebuilt_dsn, "tracker", min_size=1, max_size=2)
    try:
        # Funnel definitions are configuration, restored as they are (not rebuilt from events).
        await pool.executemany(
            "INSERT INTO funnel_definitions VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [tuple(r) for r in definitions],
        )
        handler = EventHandler(FunnelRegistry(), "tracker", "stage-tracker")
        counts = await rebuild(pool, module_infra.kafka_bootstrap, TOPICS, handler, group_id=None)
        assert counts["processed"] == consumed
        assert counts["poison"] == dead_letters  # what the live run dead-lettered, no more
        rebuilt_state = [tuple(r) for r in await pool.fetch(STATE)]
        rebuilt_history = [tuple(r) for r in await pool.fetch(HISTORY)]
        rebuilt_erased = [tuple(r) for r in await pool.fetch(ERASED)]
        # What the live run published is not published again by the rebuild.
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await pool.close()
    assert rebuilt_state == live_state
    assert rebuilt_history == live_history
    assert rebuilt_erased == live_erased
