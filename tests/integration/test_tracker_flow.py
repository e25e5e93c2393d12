"""stage-tracker on the real PostgreSQL: moves, scores, emitted events, erasure, stall timers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from funnel_contracts import ConsentChanged, Envelope, LeadErased, TouchClicked
from funnel_devstack.stack import Stack
from stage_tracker.timers.worker import StallTimers
from tests.integration.tracker_harness import T0, Harness, activity, captured, tracker_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def h(infra: Stack, fresh_dsn: str) -> AsyncIterator[Harness]:
    async with tracker_harness(fresh_dsn, infra.kafka_bootstrap) as harness:
        yield harness


async def test_events_move_a_lead_and_every_move_is_explained(h: Harness) -> None:
    lead = uuid4()
    first = captured(lead)
    view = activity(lead, "page_view", T0 + timedelta(minutes=1))
    pricing = activity(lead, "pricing_viewed", T0 + timedelta(minutes=2))
    await h.feed(first, view, pricing)
    changed = await h.emitted("funnel.stage.changed.v1")
    assert [(e["from_stage"], e["to_stage"], e["to_stage_position"]) for e in changed] == [
        (None, "awareness", 0),
        ("awareness", "interest", 1),
        ("interest", "desire", 2),
    ]
    assert changed[2]["reason"] == "pricing_viewed"
    assert changed[2]["cause_event_type"] == "funnel.activity.recorded.v1"
    async with h.api() as api:
        journey = (await api.get(f"/v1/leads/{lead}/journey")).json()
    assert journey["current_stage"] == "desire"
    # The journey shows the score now: 11 at the pricing visit, cooled since (half-life 14d).
    age = (datetime.now(UTC) - (T0 + timedelta(minutes=2))).total_seconds()
    assert journey["score"] == pytest.approx(11 * 2 ** (-age / (14 * 86400)), abs=0.02)
    assert journey["scored_as_of"].startswith((T0 + timedelta(minutes=2)).date().isoformat())
    assert journey["temperature"] == "cold"
    assert [t["to_stage"] for t in journey["transitions"]] == ["awareness", "interest", "desire"]
    assert journey["transitions"][0]["cause_event_type"] == "funnel.lead.captured.v1"


async def test_entering_hot_emits_a_scored_event_for_the_notifier(h: Harness) -> None:
    lead = uuid4()
    await h.feed(
        captured(lead, budget="yes", timing="now"),  # fit 20: warm
        activity(lead, "demo_requested", T0),  # 40: still warm
        activity(lead, "purchase_completed", T0),  # 70: hot
        activity(lead, "page_view", T0),  # 71: hot, not entering it again
    )
    scored = await h.emitted("funnel.lead.scored.v1")
    assert [(e["score"], e["temperature"], e["previous_temperature"]) for e in scored] == [
        (20.0, "warm", "cold"),
        (40.0, "warm", "warm"),
        (70.0, "hot", "warm"),
        (71.0, "hot", "hot"),
    ]
    assert scored[2]["fit_score"] == 20.0
    assert scored[2]["engagement_score"] == 50.0


async def test_a_duplicate_or_late_event_never_moves_a_lead_back(h: Harness) -> None:
    lead = uuid4()
    purchase = Envelope.of(
        activity(lead, "purchase_completed", T0 + timedelta(hours=2)), source="t"
    )
    await h.feed(captured(lead), purchase, purchase)
    await h.feed(activity(lead, "pricing_viewed", T0 + timedelta(hours=1)))  # late
    assert await h.count("transitions", lead) == 2
    async with h.api() as api:
        journey = (await api.get(f"/v1/leads/{lead}/journey")).json()
    assert journey["current_stage"] == "action"
    assert journey["engagement_score"] > 30  # the late view still counted


async def test_touch_events_unsubscribe_and_return(h: Harness) -> None:
    lead = uuid4()
    touch = uuid4()
    await h.feed(
        captured(lead),
        TouchClicked(lead_id=lead, touch_id=touch, url="https://x.test", clicked_at=T0),
        ConsentChanged(
            lead_id=lead,
            category="marketing",
            granted=False,
            source="unsubscribe-link",
            changed_at=T0 + timedelta(minutes=5),
        ),
        activity(lead, "purchase_completed", T0 + timedelta(hours=1)),
    )
    stages = [
        (e["from_stage"], e["to_stage"], e["reason"])
        for e in await h.emitted("funnel.stage.changed.v1")
    ]
    assert stages == [
        (None, "awareness", "captured"),
        ("awareness", "interest", "touch_clicked"),
        ("interest", "lost", "unsubscribed"),
        ("lost", "recycled", "returned"),
        ("recycled", "action", "purchase_completed"),
    ]


async def test_activities_before_the_capture_are_kept_and_folded_in(h: Harness) -> None:
    lead = uuid4()
    await h.feed(activity(lead, "pricing_viewed", T0 + timedelta(minutes=1)))
    assert await h.count("lead_stages", lead) == 0
    await h.feed(captured(lead))
    async with h.api() as api:
        journey = (await api.get(f"/v1/leads/{lead}/journey")).json()
    assert [t["to_stage"] for t in journey["transitions"]] == ["awareness", "desire"]


async def test_erasure_removes_the_person_and_stragglers_bring_nothing_back(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, budget="yes"), activity(lead, "page_view", T0))
    await h.feed(LeadErased(lead_id=lead, request_id=uuid4(), erased_at=datetime.now(UTC)))
    await h.feed(activity(lead, "page_view", T0 + timedelta(minutes=3)))
    for table in ("lead_stages", "transitions", "lead_signals"):
        assert await h.count(table, lead) == 0, table
    async with h.api() as api:
        assert (await api.get(f"/v1/leads/{lead}/journey")).status_code == 404


async def test_stall_timers_are_durable_stall_then_lose(h: Harness) -> None:
    lead = uuid4()
    long_ago = datetime.now(UTC) - timedelta(days=100)
    await h.feed(captured(lead, at=long_ago))
    due = await h.pool.fetchval("SELECT timer_due_at FROM lead_stages WHERE lead_id = $1", lead)
    assert due == long_ago + timedelta(days=30)
    # Each StallTimers is a fresh process: all it knows is in PostgreSQL.
    for _ in range(2):
        timers = StallTimers(
            h.pool, h.registry.__class__(), schema="tracker", source="t", poll_seconds=1
        )
        assert await timers.fire_due() >= 1
    changed = await h.emitted("funnel.stage.changed.v1")
    ours = [(e["to_stage"], e["changed_at"][:10]) for e in changed if e["lead_id"] == str(lead)]
    assert ours == [
        ("awareness", long_ago.date().isoformat()),
        ("stalled", (long_ago + timedelta(days=30)).date().isoformat()),
        ("lost", (long_ago + timedelta(days=60)).date().isoformat()),
    ]
    assert (
        await h.pool.fetchval("SELECT timer_due_at FROM lead_stages WHERE lead_id = $1", lead)
        is None
    )
