"""Activities naming people not known yet: kept, then emitted in order once the lead appears."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from funnel_contracts import ActivityRecorded
from funnel_devstack.stack import Stack
from lead_intake.activities.models import email_sha256
from tests.e2e.waiting import eventually
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
VISITOR = "v-pending-0001"


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, db_pool_max_size=12) as running:
        running.form = await running.create_form(  # type: ignore[attr-defined]
            "shop", rate_limit_per_ip="unlimited"
        )
        yield running


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


async def _post(intake: Intake, activities: list[dict[str, Any]], **kwargs: Any) -> Any:
    return await intake.client.post("/v1/activities", json={"activities": activities}, **kwargs)


async def _activity_events(intake: Intake) -> list[ActivityRecorded]:
    return [
        e
        for e in await intake.events("funnel.activity.recorded.v1")
        if isinstance(e, ActivityRecorded)
    ]


async def test_an_unknown_email_waits_and_is_emitted_in_order_when_its_lead_appears(
    intake: Intake,
) -> None:
    known = await intake.client.post("/v1/forms/shop/submissions", json={"email": "k@example.com"})
    key = intake.form["public_key"]  # type: ignore[attr-defined]
    beacon = await _post(
        intake,
        [{"type": "page_view", "occurred_at": at(1), "visitor_id": VISITOR}],
        params={"key": key},
    )
    ids = [str(uuid4()) for _ in range(4)]
    batch = [
        {"id": ids[0], "type": "pricing_viewed", "occurred_at": at(9), "email": "New@Example.com"},
        {
            "id": ids[1],
            "type": "page_view",
            "occurred_at": at(3),
            "lead_id": known.json()["lead_id"],
        },
        {"id": ids[2], "type": "demo_requested", "occurred_at": at(2), "email": "new@example.com"},
        {"id": ids[0], "type": "pricing_viewed", "occurred_at": at(9), "email": "new@example.com"},
    ]
    response = await _post(intake, batch, headers=ADMIN)

    assert beacon.json()["items"][0]["status"] == "pending"
    assert response.status_code == 202, response.text
    body = response.json()
    assert [i["status"] for i in body["items"]] == ["pending", "accepted", "pending", "duplicate"]
    assert [i["id"] for i in body["items"]] == [ids[0], ids[1], ids[2], ids[0]]
    assert (body["accepted"], body["pending"], body["duplicates"]) == (1, 2, 1)
    assert [e.activity_type for e in await _activity_events(intake)] == ["page_view"]
    stored = await intake.pool.fetch("SELECT * FROM activities WHERE lead_id IS NULL")
    assert len(stored) == 3
    assert "new@example.com" not in repr([dict(r) for r in stored])  # only the email's hash

    # The person fills the form, with the visitor id of the earlier page view.
    lead = await intake.client.post(
        "/v1/forms/shop/submissions", json={"email": "new@example.com", "visitor_id": VISITOR}
    )
    lead_id = lead.json()["lead_id"]
    events = await intake.events()
    captured = [
        e
        for e in events
        if type(e).event_type.startswith("funnel.lead.captured.") and str(e.lead_id) == lead_id
    ]
    emitted = [e for e in await _activity_events(intake) if str(e.lead_id) == lead_id]
    assert len(captured) == 1
    assert events.index(captured[0]) < events.index(emitted[0])  # the lead before its past
    assert [(e.activity_type, e.occurred_at) for e in emitted] == [
        ("page_view", T0 + timedelta(minutes=1)),
        ("demo_requested", T0 + timedelta(minutes=2)),
        ("pricing_viewed", T0 + timedelta(minutes=9)),
    ]
    assert await intake.count("activities WHERE lead_id IS NULL") == 0

    # Later batches for the email go straight to the lead; a retry changes nothing.
    again = await _post(intake, batch, headers=ADMIN)
    assert [i["status"] for i in again.json()["items"]] == ["duplicate"] * 4
    await intake.client.post("/v1/forms/shop/submissions", json={"email": "new@example.com"})
    assert len(await _activity_events(intake)) == 4


async def test_a_bulk_import_creating_the_lead_claims_what_waited(intake: Intake) -> None:
    await _post(
        intake,
        [{"type": "trial_started", "occurred_at": at(0), "email": "imported@example.com"}],
        headers=ADMIN,
    )
    imported = await intake.client.post(
        "/v1/leads/import",
        json={
            "form_id": "shop",
            "leads": [{"email": "imported@example.com", "captured_at": at(-60)}],
        },
        headers=ADMIN,
    )

    assert imported.status_code == 202, imported.text
    [event] = await _activity_events(intake)
    assert (str(event.lead_id), event.activity_type) == (
        imported.json()["lead_ids"][0],
        "trial_started",
    )


async def test_erasure_drops_what_waited_for_the_email(intake: Intake) -> None:
    await _post(
        intake,
        [{"type": "call_logged", "occurred_at": at(0), "email": "gone@example.com"}],
        headers=ADMIN,
    )
    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "gone@example.com"}, headers=ADMIN
    )
    await intake.client.post("/v1/forms/shop/submissions", json={"email": "gone@example.com"})

    assert erased.status_code == 202
    assert await intake.count("activities") == 0
    assert await _activity_events(intake) == []


async def test_activities_and_their_leads_arriving_together_are_each_emitted_once(
    intake: Intake,
) -> None:
    """Batch and form post race for the same person: the activity never stays behind."""
    people = [f"race{i}@example.com" for i in range(16)]

    async def activity(email: str) -> int:
        response = await _post(
            intake,
            [{"type": "pricing_viewed", "occurred_at": at(0), "email": email}],
            headers=ADMIN,
        )
        return int(response.status_code)

    async def submission(email: str) -> int:
        response = await intake.client.post("/v1/forms/shop/submissions", json={"email": email})
        return int(response.status_code)

    statuses = await asyncio.gather(
        *(call(email) for email in people for call in (activity, submission))
    )

    assert set(statuses) == {202}
    assert await intake.count("activities WHERE lead_id IS NULL") == 0
    emitted = await _activity_events(intake)
    assert len(emitted) == len({e.activity_id for e in emitted}) == len(people)
    leads = {r["email"]: r["id"] for r in await intake.pool.fetch("SELECT email, id FROM leads")}
    assert sorted(str(e.lead_id) for e in emitted) == sorted(str(i) for i in leads.values())


async def test_a_batch_waits_for_a_lead_being_created_and_then_emits_to_it(
    intake: Intake,
) -> None:
    """The window a plain read leaves open: a lead committed just after the batch looked."""
    email = "window@example.com"
    lead_id = uuid4()
    creating = await intake.pool.acquire()
    tx = creating.transaction()
    await tx.start()
    try:
        # What capture does for a new person: insert the lead, then claim what waited.
        await creating.execute("INSERT INTO leads (id, email) VALUES ($1, $2)", lead_id, email)
        await creating.fetch(
            "SELECT * FROM claim_pending_activities($1, NULL, $2)", lead_id, email_sha256(email)
        )
        batch = asyncio.ensure_future(
            _post(
                intake,
                [{"type": "demo_requested", "occurred_at": at(0), "email": email}],
                headers=ADMIN,
            )
        )
        waiting = await eventually(
            lambda: intake.val(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            lambda n: bool(n) or batch.done(),
            timeout=10,
            interval=0.02,
        )
        assert waiting == 1  # the batch holds on for the lead
        assert not batch.done()
        await tx.commit()
    finally:
        await intake.pool.release(creating)
    response = await batch

    assert response.json()["items"][0]["status"] == "accepted"
    [event] = await _activity_events(intake)
    assert event.lead_id == lead_id
    assert await intake.count("activities WHERE lead_id IS NULL") == 0


async def test_renewal_due_is_an_activity_the_subscription_funnel_reads(intake: Intake) -> None:
    lead = await intake.client.post("/v1/forms/shop/submissions", json={"email": "s@example.com"})
    lead_id = lead.json()["lead_id"]
    response = await _post(
        intake,
        [
            {
                "type": "purchase_completed",
                "occurred_at": at(0),
                "lead_id": lead_id,
                "amount": "9.00",
                "currency": "EUR",
                "order_id": "sub-1-2026-11",
            },
            {
                "id": "5d0c1d57-0f6f-5d4e-9a51-2f3b2c7a0001",
                "type": "renewal_due",
                "occurred_at": at(30 * 24 * 60),
                "lead_id": lead_id,
                "properties": {"subscription_id": "sub-1", "period_end": "2026-12-01"},
            },
            {
                "type": "subscription_renewed",
                "occurred_at": at(30 * 24 * 60 + 5),
                "lead_id": lead_id,
                "amount": "9.00",
                "currency": "EUR",
                "order_id": "sub-1-2026-12",
            },
        ],
        headers=ADMIN,
    )

    assert response.status_code == 202, response.text
    events = await _activity_events(intake)
    assert [e.activity_type for e in events] == [
        "purchase_completed",
        "renewal_due",
        "subscription_renewed",
    ]
    assert events[1].properties == {"subscription_id": "sub-1", "period_end": "2026-12-01"}
    assert events[2].amount is not None
