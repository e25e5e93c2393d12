"""What a post costs PostgreSQL in statements (decision 0082): a new person by email is one
statement between BEGIN and COMMIT (lead, submission, key, index entries, their event in the
outbox, what waited for their email), and a post alone in its group sends no savepoint; a
page view by lead id is one statement with nothing to seal, two with (the lead with its key;
the activity with its event).

The real app on a real PostgreSQL, through its one pooled connection, with asyncpg's query
logger counting what the post sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from funnel_contracts import ActivityRecorded, LeadCapturedV2, LeadUpdatedV2
from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
INTROSPECTION = "WITH RECURSIVE typeinfo_tree"


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, db_pool_min_size=1, db_pool_max_size=1
    ) as running:
        await running.create_form("shop", rate_limit_per_ip="unlimited")
        yield running


def _transaction(sent: list[str]) -> list[str]:
    """The statements of the post's transaction, BEGIN to COMMIT (its rate limit's bucket
    is taken before, on its own)."""
    [begin] = [i for i, q in enumerate(sent) if q.startswith("BEGIN")]
    return sent[begin : sent.index("COMMIT") + 1]


@contextmanager
def _sent(intake: Intake) -> Iterator[list[str]]:
    """The statements the app's connection sends inside the block (one line each)."""
    sent: list[str] = []
    [holder] = intake.pool._holders  # the pool's one connection
    conn = holder._con
    assert conn is not None

    def log(record: Any) -> None:
        query = " ".join(record.query.split()).rstrip(";")
        if not query.startswith(INTROSPECTION):
            sent.append(query)

    conn.add_query_logger(log)
    try:
        yield sent
    finally:
        conn.remove_query_logger(log)


async def _post(intake: Intake, **fields: str) -> str:
    response = await intake.client.post("/v1/forms/shop/submissions", json=fields)
    assert response.status_code == 202, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def test_a_new_person_s_post_is_one_statement_between_begin_and_commit(
    intake: Intake,
) -> None:
    await _post(intake, email="warm.up@example.com")  # the connection's first statements
    with _sent(intake) as sent:
        lead = await _post(intake, email="ny@example.com", first_name="Ny")
    with _sent(intake) as with_phone:
        await _post(intake, email="tel@example.com", phone="+46 70 123 45 67")

    transaction = _transaction(sent)
    assert len(transaction) == 3, sent
    assert transaction[1].startswith("WITH lead AS (INSERT INTO leads")
    # With a phone, one more: is someone known by that phone alone (then merged)?
    assert len(_transaction(with_phone)) == 4, with_phone
    assert "phone" in _transaction(with_phone)[2]
    # Everything the capture wrote, written by that one statement:
    rows = await intake.pool.fetchrow(
        """SELECT (SELECT count(*) FROM submissions WHERE lead_id = $1::uuid) AS submissions,
                  (SELECT count(*) FROM subject_keys WHERE lead_id = $1::uuid) AS keys,
                  (SELECT count(*) FROM lead_search_terms WHERE lead_id = $1::uuid) AS terms""",
        lead,
    )
    assert (rows["submissions"], rows["keys"]) == (1, 1)
    assert rows["terms"] >= 2  # the email's and the name's entries
    captured = [e for e in await intake.events() if str(e.lead_id) == lead]
    assert [type(e) for e in captured] == [LeadCapturedV2]
    person = await intake.person(captured[0])
    assert (person.email, person.first_name) == ("ny@example.com", "Ny")


async def test_a_known_person_s_post_writes_nothing_twice_and_updates_them(
    intake: Intake,
) -> None:
    """The statement finds the email taken and writes nothing (not even the event it was
    given); the post goes on as a returning person's."""
    first = await _post(intake, email="back@example.com", first_name="Bo")
    with _sent(intake) as sent:
        again = await _post(intake, email="back@example.com", last_name="Berg")

    assert again == first
    assert _transaction(sent)[1].startswith("WITH lead AS (INSERT INTO leads")
    assert await intake.count("leads") == 1
    assert await intake.count("subject_keys") == 1
    assert await intake.count("submissions") == 2
    kinds = [type(e) for e in await intake.events() if str(e.lead_id) == first]
    assert kinds == [LeadCapturedV2, LeadUpdatedV2]
    [updated] = await intake.events(LeadUpdatedV2.event_type)
    assert isinstance(updated, LeadUpdatedV2)
    person = await intake.person(updated)
    assert (person.first_name, person.last_name) == ("Bo", "Berg")


async def test_what_waited_for_the_email_follows_the_new_person_s_event(intake: Intake) -> None:
    """Activities that named the email before anyone gave it are claimed by the same
    statement and emitted after the capture, in the order they happened."""
    at = datetime.now(UTC) - timedelta(hours=1)
    waiting = {
        "activities": [
            {
                "type": kind,
                "email": "later@example.com",
                "occurred_at": (at + timedelta(minutes=minute)).isoformat(),
                "properties": {"plan": "pro"},
            }
            for kind, minute in (("webinar_attended", 5), ("pricing_viewed", 1))
        ]
    }
    kept = await intake.client.post("/v1/activities", json=waiting, headers=ADMIN)
    assert kept.status_code == 202, kept.text
    assert [i["status"] for i in kept.json()["items"]] == ["pending", "pending"]

    lead = await _post(intake, email="later@example.com")

    events = [e for e in await intake.events() if str(e.lead_id) == lead]
    assert [type(e) for e in events] == [LeadCapturedV2, ActivityRecorded, ActivityRecorded]
    assert [e.activity_type for e in events[1:]] == ["pricing_viewed", "webinar_attended"]  # type: ignore[attr-defined]
    pending = await intake.val("SELECT count(*) FROM activities WHERE lead_id IS NULL")
    assert pending == 0


async def test_a_page_view_by_lead_id_is_a_look_up_and_a_write(intake: Intake) -> None:
    lead = await _post(intake, email="viewer@example.com")
    view = {
        "type": "page_view",
        "lead_id": lead,
        "occurred_at": datetime.now(UTC).isoformat(),
        "page_url": "https://example.com/pricing",
    }
    with _sent(intake) as sent:
        first = await intake.client.post(
            "/v1/activities", json={"activities": [view]}, headers=ADMIN
        )
    again = await intake.client.post(
        "/v1/activities",
        json={"activities": [{**view, "id": first.json()["items"][0]["id"]}]},
        headers=ADMIN,
    )

    assert first.status_code == 202, first.text
    transaction = _transaction(sent)
    assert len(transaction) == 4, sent
    assert "subject_keys" in transaction[1]  # the lead and its key, one look-up
    assert transaction[2].startswith("WITH stored AS ( INSERT INTO activities")
    assert [i["status"] for i in again.json()["items"]] == ["duplicate"]
    [recorded] = await intake.events(ActivityRecorded.event_type)  # once: not for the repeat
    assert str(recorded.lead_id) == lead


async def test_a_page_view_with_nothing_to_seal_is_one_statement(intake: Intake) -> None:
    """By lead id, no page URL or properties: the lead's look-up, the view and its event in
    one statement, its own transaction. An unknown or erased lead gets the 422 of before and
    nothing is written; the same id again is a duplicate."""
    lead = await _post(intake, email="quick@example.com")
    gone = await _post(intake, email="gone@example.com")
    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "gone@example.com"}, headers=ADMIN
    )
    assert erased.status_code == 202
    view = {"type": "page_view", "lead_id": lead, "occurred_at": datetime.now(UTC).isoformat()}

    with _sent(intake) as sent:
        first = await intake.client.post(
            "/v1/activities", json={"activities": [view]}, headers=ADMIN
        )
    item = first.json()["items"][0]
    again = await intake.client.post(
        "/v1/activities", json={"activities": [{**view, "id": item["id"]}]}, headers=ADMIN
    )
    refused = [
        await intake.client.post(
            "/v1/activities", json={"activities": [{**view, "lead_id": other}]}, headers=ADMIN
        )
        for other in (gone, "7d4c8d5e-0000-4000-8000-000000000000")
    ]

    assert first.status_code == 202, first.text
    assert item["status"] == "accepted"
    assert len(sent) == 1, sent
    assert sent[0].startswith("WITH lead AS ( SELECT id FROM leads")
    assert [i["status"] for i in again.json()["items"]] == ["duplicate"]
    for answer in refused:
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["activities.0.lead_id"]
    assert await intake.count("activities") == 1
    [recorded] = await intake.events(ActivityRecorded.event_type)
    assert (str(recorded.lead_id), recorded.activity_type) == (lead, "page_view")  # type: ignore[attr-defined]
