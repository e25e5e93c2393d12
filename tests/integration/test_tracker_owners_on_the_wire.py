"""Owners on a real broker: the tracker's consumer and relay running, owner changes made
through the API are published (the bytes on the topics decode to the contract events), read
back live from the tracker's own log without changing anything, and restored by a rebuild."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer

from funnel_contracts import (
    EventData,
    LeadOwnerChanged,
    OwnerAssigned,
    StageChanged,
    decode,
    parse_event,
)
from funnel_contracts.topics import STAGE_COMMANDS, STAGE_EVENTS
from funnel_devstack.stack import Stack
from funnel_servicekit.auth import new_api_key
from funnel_servicekit.db import create_pool
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.moves.consumer import TOPICS, EventHandler
from stage_tracker.rebuild import rebuild
from stage_tracker.settings import TrackerSettings
from tests.integration.tracker_harness import (
    ADMIN_KEY,
    STATE,
    T0,
    Harness,
    activity,
    captured,
    produce,
    running_tracker,
    tracker_database,
    until_count,
)

pytestmark = pytest.mark.integration

ANA, ANA_ENTRY = new_api_key("ana", ["leads:read", "leads:write"])
OWNERS = "SELECT lead_id, owner FROM lead_stages ORDER BY lead_id"
COMMANDS_IN = "SELECT count(*) FROM inbox WHERE event_type = 'funnel.lead.owner-assigned.v1'"


async def _read(stack: Stack, topic: str, wanted: int) -> list[tuple[bytes, EventData]]:
    """The first `wanted` records of the tracker's owner and stage events on `topic`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[tuple[bytes, EventData]] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < wanted and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    envelope = decode(r.key, r.value, list(r.headers))
                    found.append((r.key, parse_event(envelope.type, envelope.data)))
    finally:
        await consumer.stop()
    return found


async def test_owner_changes_are_on_the_topics_and_a_rebuild_restores_them(
    module_infra: Stack,
) -> None:
    stack = module_infra
    kept, passed, untouched = uuid4(), uuid4(), uuid4()
    dsn = await tracker_database(stack)
    settings = TrackerSettings(
        database_url=dsn,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        admin_api_key=ADMIN_KEY,
        api_keys=[ANA_ENTRY],
    )
    await produce(stack, [captured(lead, at=T0) for lead in (kept, passed, untouched)])
    async with running_tracker(stack, dsn, "tracker-owners") as pool:
        await until_count(pool, "SELECT count(*) FROM lead_stages", 3)
        async with Harness(pool, settings).api(key=ANA) as api:
            for lead, owner in ((kept, "ana"), (passed, "admin"), (passed, None), (passed, "ana")):
                response = await api.put(f"/v1/leads/{lead}/owner", json={"owner": owner})
                assert response.status_code == 200, response.text
            bad = await api.put(f"/v1/leads/{kept}/owner", json={"owner": "mallory"})
            assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "owner")
        # Read back live from the tracker's own log: seen already, nothing changes.
        await until_count(pool, COMMANDS_IN, 4)
        await produce(stack, [activity(kept, "pricing_viewed", T0)])
        await until_count(pool, "SELECT count(*) FROM lead_stages WHERE stage = 'desire'", 1)
        versions = dict(await pool.fetch("SELECT lead_id, version FROM lead_stages"))
        assert versions[passed] == 4  # captured, then three owner changes; no read-back bump
        assert versions[untouched] == 1
        live_owners = [tuple(r) for r in await pool.fetch(OWNERS)]
        live_state = [tuple(r) for r in await pool.fetch(STATE)]
        consumed = await pool.fetchval("SELECT count(*) FROM inbox")
        deadline = time.monotonic() + 60
        while await pool.fetchval("SELECT count(*) FROM outbox"):  # all published
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    assert sorted(live_owners) == sorted([(kept, "ana"), (passed, "ana"), (untouched, None)])

    commands = await _read(stack, STAGE_COMMANDS, 4)
    assigned = [(key, e) for key, e in commands if isinstance(e, OwnerAssigned)]
    # In order per lead (a lead's records share a partition).
    assert [(e.owner, e.actor) for _, e in assigned if e.lead_id == kept] == [("ana", "ana")]
    assert [(e.owner, e.actor) for _, e in assigned if e.lead_id == passed] == [
        ("admin", "ana"),
        (None, "ana"),
        ("ana", "ana"),
    ]
    assert all(key == str(e.lead_id).encode() for key, e in assigned)  # keyed by lead
    events = await _read(stack, STAGE_EVENTS, 3 + 4 + 2)  # captures, owners, the move
    changed = [e for _, e in events if isinstance(e, LeadOwnerChanged)]
    assert [(e.owner, e.previous_owner, e.actor) for e in changed if e.lead_id == passed] == [
        ("admin", None, "ana"),
        (None, "admin", "ana"),
        ("ana", None, "ana"),
    ]
    moves = [e for _, e in events if isinstance(e, StageChanged)]
    [to_desire] = [m for m in moves if m.to_stage == "desire"]
    assert (to_desire.lead_id, to_desire.owner) == (kept, "ana")
    assert {m.owner for m in moves if m.from_stage is None} == {None}  # captured unowned

    rebuilt_dsn = await tracker_database(stack)
    rebuilt = await create_pool(rebuilt_dsn, "tracker", min_size=1, max_size=2)
    try:
        handler = EventHandler(FunnelRegistry(), "tracker", "stage-tracker")
        counts = await rebuild(rebuilt, stack.kafka_bootstrap, TOPICS, handler, group_id=None)
        assert counts["processed"] == consumed
        assert [tuple(r) for r in await rebuilt.fetch(OWNERS)] == live_owners
        assert [tuple(r) for r in await rebuilt.fetch(STATE)] == live_state
    finally:
        await rebuilt.close()
