"""A merge at the notifier, on the real PostgreSQL and SMTP server: the other lead's waiting
touches move to the survivor, those the survivor has already are dropped, its consent and
contact fill the survivor's gaps; the person gets each touch once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from funnel_contracts import EventData, LeadMerged
from funnel_contracts.examples import lead_captured_v2
from funnel_contracts.sealed import PersonalData
from funnel_devstack.stack import Stack
from tests.integration.notifier_harness import Harness, captured, entered, notifier_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap) as harness:
        yield harness


async def _touches(h: Harness, lead: object) -> list[tuple[str, str, str | None]]:
    rows = await h.pool.fetch(
        "SELECT playbook, status, reason FROM touches WHERE lead_id = $1 ORDER BY playbook", lead
    )
    return [(r["playbook"], r["status"], r["reason"]) for r in rows]


async def test_a_merge_moves_waiting_touches_to_the_survivor_once(h: Harness) -> None:
    survivor, other = uuid4(), uuid4()
    await h.feed(
        captured(survivor, email="one@example.com"),
        entered(survivor, "awareness", 0),
        entered(survivor, "interest", 1, "awareness"),  # nurture-1..3, a day and more away
        captured(other, email="two@example.com", consent=("marketing",)),
        entered(other, "awareness", 0),
        entered(other, "interest", 1, "awareness"),
    )
    # Both welcomes are due now, both nurtures wait: as two leads, the person would get both.
    before = await _touches(h, other)
    assert {p for p, status, _ in before if status == "scheduled"} >= {"nurture-1", "nurture-2"}

    await h.feed(
        LeadMerged(
            lead_id=survivor, merged_lead_id=other, reason="manual", actor="ana",
            merged_at=datetime.now(UTC),
        )
    )  # fmt: skip

    others = await _touches(h, other)
    assert {(p, s, r) for p, s, r in others if p.startswith("nurture")} == {
        (f"nurture-{n}", "cancelled", f"merged into {survivor}") for n in (1, 2, 3)
    }
    mine = await _touches(h, survivor)
    assert sorted(p for p, _, _ in mine) == [
        "nurture-1",
        "nurture-2",
        "nurture-3",
        "welcome",
    ]  # fmt: skip  (one of each: the duplicates were dropped)
    consent = await h.pool.fetchval(
        "SELECT granted FROM consents WHERE lead_id = $1 AND category = 'marketing'", survivor
    )
    assert consent is True  # the other's consent fills the survivor's gap


async def test_a_real_person_merged_into_a_test_lead_is_touched_two_test_leads_are_not(
    h: Harness,
) -> None:
    """A test survivor and a real other lead are one real person: the survivor is no test lead
    any more and the touches moved to it wait to be sent. Two test leads stay a test lead."""
    tried, bought, trial_a, trial_b = uuid4(), uuid4(), uuid4(), uuid4()
    now = datetime.now(UTC)

    def test_capture(lead: UUID) -> EventData:
        return lead_captured_v2(PersonalData(email=f"{lead.hex[:8]}@example.com"), lead_id=lead,
                                test=True)  # fmt: skip

    def merge(survivor: UUID, other: UUID) -> LeadMerged:
        return LeadMerged(
            lead_id=survivor, merged_lead_id=other, reason="manual", actor=None, merged_at=now
        )

    await h.feed(
        test_capture(tried),
        entered(tried, "awareness", 0),
        captured(bought, email="bought@example.com"),
        entered(bought, "awareness", 0),
        entered(bought, "interest", 1, "awareness"),
        test_capture(trial_a),
        test_capture(trial_b),
    )
    assert {s for _, s, _ in await _touches(h, tried)} <= {"cancelled"}
    waiting = {p for p, s, _ in await _touches(h, bought) if s == "scheduled"}
    assert {"nurture-1", "nurture-2"} <= waiting

    await h.feed(merge(tried, bought), merge(trial_a, trial_b))

    tests = {r["lead_id"] for r in await h.pool.fetch("SELECT lead_id FROM test_leads")}
    assert tests == {trial_a, trial_b}
    moved = {p for p, s, _ in await _touches(h, tried) if s == "scheduled"}
    assert waiting - {"welcome"} <= moved
