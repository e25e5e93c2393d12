"""Offline touches (calls, meetings, events attended, notes) in the touch-effectiveness report,
against a brute-force count over the raw events: each counts as the playbook
"offline:<type>" at the stage the lead was in when it happened, beside the online touches,
and a lead an offline touch reached at a stage is no longer in that stage's baseline. The
events are published shuffled (every lead's events out of order), some twice, and one
person is erased."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from funnel_contracts import ActivityRecorded, EventData, LeadErased, StageChanged, TouchSent
from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES
from funnel_devstack.stack import Stack
from tests.integration.kit_support import eventually
from tests.integration.reporting_support import get, publish

pytestmark = pytest.mark.integration

FUNNEL = "offline-sales"
STAGES = ("awareness", "interest", "desire", "action")
START = datetime(2026, 9, 1, tzinfo=UTC)
PERIOD = {"start": "2026-09-01", "end": "2026-10-31"}


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _minutes(rng: random.Random, lo: int, hi: int) -> timedelta:
    return timedelta(minutes=rng.randrange(lo, hi))


def _lead(rng: random.Random, lead: UUID) -> list[EventData]:
    events: list[EventData] = []
    at = START + _minutes(rng, 0, 20 * 24 * 60)
    first, prev = at, None
    entered: list[str] = []
    for position, stage in enumerate(STAGES):
        if position and rng.random() < 0.4:
            break
        if position:
            at += _minutes(rng, 60, 6 * 24 * 60)
        events.append(
            StageChanged(
                lead_id=lead,
                funnel_id=FUNNEL,
                funnel_version=1,
                from_stage=prev,
                to_stage=stage,
                to_stage_position=position,
                reason="rule",
                changed_at=at,
            )
        )
        entered.append(stage)
        prev = stage
    for _ in range(rng.choice((0, 0, 1, 2, 3))):  # some before the first entry: no stage
        events.append(
            ActivityRecorded(
                lead_id=lead,
                activity_id=_uuid(rng),
                activity_type=rng.choice(OFFLINE_ACTIVITY_TYPES),
                occurred_at=first + _minutes(rng, -24 * 60, 15 * 24 * 60),
                recorded_at=first,
                actor=rng.choice(("ana", "ben")),
                properties={"outcome": "reached"},
            )
        )
    if rng.random() < 0.3:
        events.append(
            TouchSent(
                lead_id=lead,
                touch_id=_uuid(rng),
                playbook="nurture",
                channel="email",
                template="t",
                funnel_id=FUNNEL,
                stage=rng.choice(entered),
                sent_at=first + _minutes(rng, 0, 10 * 24 * 60),
            )
        )
    for n in range(rng.choice((0, 0, 1, 2))):
        events.append(
            ActivityRecorded(
                lead_id=lead,
                activity_id=_uuid(rng),
                activity_type="purchase_completed",
                occurred_at=first + _minutes(rng, 0, 40 * 24 * 60),
                recorded_at=first,
                amount=Decimal("10.00"),
                currency="EUR",
                order_id=f"{lead.hex[:8]}-{n}",
            )
        )
    return events


def brute_force(
    events: Sequence[EventData], window_days: int
) -> dict[tuple[str, str], tuple[int, int]]:
    """(stage, playbook) -> (leads, converted); playbook "" is the stage's baseline."""
    erased = {e.lead_id for e in events if isinstance(e, LeadErased)}
    entries: dict[UUID, list[tuple[datetime, str]]] = defaultdict(list)
    online: dict[UUID, list[tuple[datetime, str, str | None]]] = defaultdict(list)
    offline: dict[UUID, list[tuple[datetime, str]]] = defaultdict(list)
    orders: dict[UUID, list[datetime]] = defaultdict(list)
    for e in events:
        if isinstance(e, StageChanged):
            entries[e.lead_id].append((e.changed_at, e.to_stage))
        elif isinstance(e, TouchSent):
            online[e.lead_id].append((e.sent_at, e.playbook, e.stage))
        elif isinstance(e, ActivityRecorded) and e.activity_type in OFFLINE_ACTIVITY_TYPES:
            offline[e.lead_id].append((e.occurred_at, e.activity_type))
        elif isinstance(e, ActivityRecorded) and e.activity_type == "purchase_completed":
            orders[e.lead_id].append(e.occurred_at)
    window = timedelta(days=window_days)
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for lead, moves in entries.items():
        if lead in erased:
            continue
        moves = sorted(set(moves))
        for stage in dict.fromkeys(s for _, s in moves):
            entry = min(at for at, s in moves if s == stage)
            anchors: dict[str, datetime] = {}
            for at, playbook, at_stage in online[lead]:
                if at_stage == stage:
                    anchors[playbook] = min(at, anchors.get(playbook, at))
            for at, kind in offline[lead]:
                before = [s for when, s in moves if when <= at]
                if before and before[-1] == stage:
                    name = f"offline:{kind}"
                    anchors[name] = min(at, anchors.get(name, at))
            for playbook, anchor in (anchors or {"": entry}).items():
                counts = out[(stage, playbook)]
                counts[0] += 1
                if any(anchor <= o <= anchor + window for o in orders[lead]):
                    counts[1] += 1
    return {key: (n, c) for key, (n, c) in out.items()}


@pytest.fixture(scope="module")
async def loaded(module_infra: Stack) -> AsyncIterator[tuple[Stack, list[EventData]]]:
    stack = module_infra
    rng = random.Random(25)
    leads = [_uuid(rng) for _ in range(160)]
    events = [e for lead in leads for e in _lead(rng, lead)]
    events.append(LeadErased(lead_id=leads[3], request_id=_uuid(rng), erased_at=START))
    rng.shuffle(events)  # late and re-ordered: every lead's events in a random order
    duplicates = rng.sample(range(len(events)), 20)
    await stack._run_command("reporting", "migrate")
    stack.start_service("reporting")
    try:
        await stack.wait_service_ready("reporting")
        await publish(stack, events, duplicates)

        async def inbox() -> int:
            conn = await asyncpg.connect(stack.postgres.dsn)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM reporting.inbox"))
            finally:
                await conn.close()

        await eventually(inbox, lambda n: n == len(events), timeout=120, what="every event")
        yield stack, events
    finally:
        stack.stop_service("reporting")


@pytest.mark.parametrize("window_days", [7, 30])
async def test_offline_touches_equal_the_brute_force_count(loaded, window_days: int) -> None:  # type: ignore[no-untyped-def]
    stack, events = loaded
    body = await get(
        stack, f"/v1/funnels/{FUNNEL}/touch-effectiveness", **PERIOD, window_days=window_days
    )
    expected = brute_force(events, window_days)
    rows: list[dict[str, Any]] = body["touches"]
    got = {(r["stage"], r["playbook"]): (r["leads"], r["converted"]) for r in rows}
    assert got == {key: value for key, value in expected.items() if key[1]}
    for r in rows:
        assert (r["baseline_leads"], r["baseline_converted"]) == expected.get(
            (r["stage"], ""), (0, 0)
        ), r
        assert r["channel"] == ("offline" if r["playbook"].startswith("offline:") else "online")
    offline = [r for r in rows if r["channel"] == "offline"]
    print(
        f"window {window_days}d: {len(offline)} offline rows, {len(rows) - len(offline)} online;",
        sorted((r["stage"], r["playbook"], r["leads"], r["converted"]) for r in offline)[:4],
    )
    assert len(offline) >= 8
    assert sum(r["converted"] for r in offline) > 0
    assert {r["playbook"] for r in offline} == {f"offline:{t}" for t in OFFLINE_ACTIVITY_TYPES}
