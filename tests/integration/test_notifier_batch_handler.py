"""The notifier's batch handler (one poll's events at once, decision 0065) against its
record-by-record handler, on the real PostgreSQL: the same mixed story of several people
(consent, stages, activities that schedule and cancel touches, scores, a stage change that
arrives late, a test lead, an erasure in the middle of the batch, a merge, an event for a
person erased earlier) fed both ways leaves the same rows behind, and the batch wakes the
sender and the contact resolver (once each, at its end).

The batch handler has two ways: event by event inside each event's span when spans are
recorded, and in waves of one statement per kind of event when they are not (decision
0090); both are checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from funnel_contracts import (
    Consent,
    EventData,
    LeadCapturedV2,
    LeadErased,
    LeadMerged,
)
from funnel_contracts.examples import lead_captured_v2
from funnel_contracts.sealed import PersonalData
from funnel_devstack.stack import Stack
from notifier.touches import consumer
from tests.integration.notifier_harness import (
    Harness,
    captured,
    did,
    entered,
    notifier_harness,
    scored,
)

pytestmark = pytest.mark.integration

PEOPLE = (
    "plain",
    "active",
    "shopper",
    "late",
    "tester",
    "erased_mid",
    "survivor",
    "other",
    "erased_before",
)


@pytest.fixture(params=["spans recorded", "spans not recorded"])
async def h(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str, infra: Stack
) -> AsyncIterator[Harness]:
    recorded = request.param == "spans recorded"
    monkeypatch.setattr(consumer, "spans_recorded", lambda: recorded)
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap) as harness:
        yield harness


def _test_lead(lead_id: UUID) -> LeadCapturedV2:
    now = datetime.now(UTC)
    return lead_captured_v2(
        PersonalData(email="t@example.com", first_name="Tess"),
        lead_id=lead_id,
        consent=Consent(text="Yes, email me", categories=("marketing",), given_at=now),
        test=True,
    )


def _story(p: dict[str, UUID]) -> tuple[list[EventData], list[EventData]]:
    """What happened before the batch, and the batch: every kind of event the handler takes
    apart from scores, owners and leaks, interleaved across people as a poll mixes them."""
    now = datetime.now(UTC)
    late_move = entered(p["late"], "interest", 1, "awareness").model_copy(
        update={"changed_at": now + timedelta(minutes=1)}
    )
    before: list[EventData] = [
        captured(p["erased_before"], email="gone@example.com"),
        LeadErased(lead_id=p["erased_before"], request_id=uuid4(), erased_at=now),
    ]
    batch: list[EventData] = [
        captured(p["plain"], email="plain@example.com", consent=("marketing",)),
        captured(
            p["active"], email="active@example.com", locale="sv-SE", time_zone="Europe/Stockholm"
        ),
        _test_lead(p["tester"]),
        captured(p["erased_mid"], email="mid@example.com", consent=("marketing",)),
        entered(p["plain"], "awareness", 0),
        entered(p["active"], "awareness", 0),
        entered(p["tester"], "awareness", 0),
        entered(p["erased_mid"], "awareness", 0),
        did(p["active"], "page_view", now),
        entered(p["active"], "interest", 1, "awareness"),
        scored(p["active"], "hot", previous="warm"),  # turns hot: the sales task
        scored(p["active"], "hot"),  # stays hot (what the notifier saw last): no new task
        captured(p["shopper"], email="shop@example.com", consent=("marketing",)),
        entered(p["shopper"], "awareness", 0),
        did(p["shopper"], "cart_abandoned", now),  # two reminders scheduled
        scored(p["plain"], "hot", previous="cold"),  # another lead's score in the same poll
        did(p["shopper"], "checkout_started", now + timedelta(seconds=1)),  # cancels them
        scored(p["shopper"], "warm"),
        did(p["shopper"], "purchase_completed", now + timedelta(seconds=2)),  # two more
        captured(p["late"], email="late@example.com"),
        late_move,
        entered(p["late"], "awareness", 0),  # older than the move before it: changes nothing
        LeadErased(lead_id=p["erased_mid"], request_id=uuid4(), erased_at=now),
        entered(p["erased_mid"], "interest", 1, "awareness"),  # after its erasure: nothing
        captured(p["survivor"], email="one@example.com"),
        captured(p["other"], email="two@example.com", consent=("marketing",)),
        entered(p["survivor"], "awareness", 0),
        entered(p["other"], "awareness", 0),
        entered(p["other"], "interest", 1, "awareness"),
        LeadMerged(
            lead_id=p["survivor"],
            merged_lead_id=p["other"],
            reason="manual",
            actor="ana",
            merged_at=now,
        ),
        captured(
            p["erased_before"], email="gone@example.com", consent=("marketing",)
        ),  # late: must not bring them back
        entered(p["erased_before"], "awareness", 0),
    ]
    return before, batch


async def _state(conn: asyncpg.Connection, p: dict[str, UUID]) -> dict[str, Any]:
    """Every row the consumer writes, per person (ids and times left out)."""
    out: dict[str, Any] = {}

    def named(reason: str | None) -> str | None:  # "merged into <id>" names the person
        for name, lead in p.items():
            reason = reason.replace(str(lead), name) if reason else reason
        return reason

    for name, lead in p.items():
        out[name] = {
            "touches": [
                (*r[:3], named(r[3]), *r[4:])
                for r in await conn.fetch(
                    "SELECT playbook, channel, status, reason, kind, category, stage,"
                    " requires_stage, cancel_on FROM touches WHERE lead_id = $1"
                    " ORDER BY playbook, status",
                    lead,
                )
            ],
            "contact": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT email, first_name, locale, time_zone FROM contacts WHERE lead_id = $1",
                    lead,
                )
            ],
            "consents": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT category, granted FROM consents WHERE lead_id = $1 ORDER BY category",
                    lead,
                )
            ],
            "state": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT funnel_id, stage, temperature FROM lead_state WHERE lead_id = $1", lead
                )
            ],
            "activities": [
                r["activity_type"]
                for r in await conn.fetch(
                    "SELECT activity_type FROM lead_activities WHERE lead_id = $1", lead
                )
            ],
            "pending": await conn.fetchval(
                "SELECT count(*) FROM pending_contacts WHERE lead_id = $1", lead
            ),
            "erased": await conn.fetchval(
                "SELECT count(*) FROM erased_leads WHERE lead_id = $1", lead
            ),
            "test": await conn.fetchval("SELECT count(*) FROM test_leads WHERE lead_id = $1", lead),
        }
    return out


async def _run(h: Harness, feed: Callable[..., Any]) -> dict[str, Any]:
    people = {name: uuid4() for name in PEOPLE}
    before, batch = _story(people)
    await h.feed_one_by_one(*before)
    await feed(*batch)
    async with h.pool.acquire() as conn:
        return await _state(conn, people)


async def test_a_batch_leaves_what_the_events_one_by_one_leave(h: Harness) -> None:
    one_by_one = await _run(h, h.feed_one_by_one)
    batched = await _run(h, h.feed)

    assert batched == one_by_one
    # The story did what it says (so the comparison is not of two empty results).
    mid = batched["erased_mid"]
    # Its welcome was scheduled before the erasure, cancelled by it; nothing came after.
    assert {(t[0], t[2], t[3]) for t in mid.pop("touches")} == {("welcome", "cancelled", "erased")}
    assert mid == {
        "contact": [],
        "consents": [],
        "state": [],
        "activities": [],
        "pending": 0,
        "erased": 1,
        "test": 0,
    }
    assert batched["erased_before"]["touches"] == []
    assert batched["erased_before"]["erased"] == 1
    assert batched["tester"]["test"] == 1
    assert batched["tester"]["touches"] == []
    assert batched["tester"]["pending"] == 1  # its sealed contact waits for the resolver
    assert batched["active"]["state"] == [("digital-sales", "interest", "hot")]
    assert batched["active"]["activities"] == ["page_view"]
    assert [t[0] for t in batched["active"]["touches"] if t[1] == "task"] == ["hot-lead-call"]
    assert {t[0] for t in batched["plain"]["touches"]} >= {"welcome"}
    assert ("cancelled", "merged into survivor") in {
        (t[2], t[3]) for t in batched["other"]["touches"]
    }
    assert batched["survivor"]["consents"] == [("marketing", True)]  # folded from the other
    shopper = {(t[0], t[2], t[3]) for t in batched["shopper"]["touches"]}
    assert {
        ("abandoned-cart-1", "cancelled", "checkout_started since the trigger"),
        ("abandoned-cart-2", "cancelled", "checkout_started since the trigger"),
        ("delivery-feedback", "scheduled", None),
        ("review-request", "scheduled", None),
    } <= shopper
    assert batched["shopper"]["state"] == [("digital-sales", "awareness", "warm")]
    assert sorted(batched["shopper"]["activities"]) == [
        "cart_abandoned",
        "checkout_started",
        "purchase_completed",
    ]
    assert batched["late"]["state"] == [("digital-sales", "interest", None)]
    assert [t[0] for t in batched["plain"]["touches"] if t[1] == "task"] == ["hot-lead-call"]


async def test_a_batch_wakes_the_sender_and_the_contact_resolver(h: Harness) -> None:
    people = {name: uuid4() for name in PEOPLE}
    _, batch = _story(people)
    heard: list[str] = []
    listener = await asyncpg.connect(h.settings.database_url)
    try:
        for channel in ("notifier_touches", "notifier_contacts"):
            await listener.add_listener(channel, lambda _c, _p, ch, _x: heard.append(ch))
        await h.feed(*batch)
        await asyncio.sleep(0.5)  # notifications arrive asynchronously after the commit
    finally:
        await listener.close()
    assert sorted(heard) == ["notifier_contacts", "notifier_touches"]
