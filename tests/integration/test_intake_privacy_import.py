"""Erasure and bulk import on the real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from funnel_contracts import LeadCapturedV2, LeadErased
from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap) as running:
        await running.create_form("shop", default_phone_region="US", allow_unknown_fields=True)
        yield running


async def test_erasure_removes_the_persons_data_and_emits_lead_erased(intake: Intake) -> None:
    first = await intake.client.post(
        "/v1/forms/shop/submissions",
        json={
            "email": "forget@example.com",
            "first_name": "Fay",
            "phone": "(201) 555-0123",
            "shoe": "42",
        },
        headers={"user-agent": "UA"},
    )
    await intake.client.post("/v1/forms/shop/submissions", json={"email": "keep@example.com"})
    lead_id = first.json()["lead_id"]

    anonymous = await intake.client.post(
        "/v1/erasure-requests", json={"email": "forget@example.com"}
    )
    response = await intake.client.post(
        "/v1/erasure-requests", json={"email": " Forget@Example.com "}, headers=ADMIN
    )

    assert anonymous.status_code == 401
    assert response.status_code == 202
    assert response.json()["erased_leads"] == [lead_id]
    lead = await intake.pool.fetchrow("SELECT * FROM leads WHERE id = $1::uuid", lead_id)
    assert (lead["email"], lead["phone"], lead["first_name"], lead["custom_fields"]) == (
        None,
        None,
        None,
        {},
    )
    assert lead["erased_at"] is not None
    sub = await intake.pool.fetchrow(
        "SELECT user_agent, ip_truncated FROM submissions WHERE lead_id = $1::uuid", lead_id
    )
    assert (sub["user_agent"], sub["ip_truncated"]) == (None, None)
    assert await intake.val("SELECT count(*) FROM leads WHERE email = 'keep@example.com'") == 1
    erased = await intake.events("funnel.lead.erased.v1")
    assert [str(e.lead_id) for e in erased] == [lead_id]
    assert isinstance(erased[0], LeadErased)
    assert str(erased[0].request_id) == response.json()["request_id"]
    stored = await intake.val("SELECT email_sha256 FROM erasure_requests")
    assert "@" not in stored  # only a hash of the address is kept

    back = await intake.client.post(
        "/v1/forms/shop/submissions", json={"email": "forget@example.com"}
    )
    assert back.json()["new_lead"] is True  # they came back: a new lead, nothing old attached
    assert back.json()["lead_id"] != lead_id


async def test_import_keeps_the_original_capture_time_and_skips_known_people(
    intake: Intake,
) -> None:
    known = await intake.client.post(
        "/v1/forms/shop/submissions", json={"email": "known@example.com"}
    )
    captured_at = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
    response = await intake.client.post(
        "/v1/leads/import",
        json={
            "form_id": "shop",
            "leads": [
                {
                    "email": "Old.One@example.com",
                    "first_name": " Olga ",
                    "captured_at": captured_at.isoformat(),
                    "original_source": "hubspot",
                    "utm": {"source": "trade-show"},
                },
                {"email": "known@example.com", "captured_at": captured_at.isoformat()},
                {
                    "email": "two@example.com",
                    "phone": "201-555-0199",
                    "captured_at": captured_at.isoformat(),
                },
            ],
        },
        headers=ADMIN,
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["imported"], body["existing"]) == (2, 1)
    assert body["lead_ids"][1] == known.json()["lead_id"]
    imported = [
        e
        for e in await intake.events("funnel.lead.captured.v2")
        if isinstance(e, LeadCapturedV2) and e.source == "import"
    ]
    assert len(imported) == 2
    first, second = imported
    person = await intake.person(first)
    assert (person.email, person.first_name, first.captured_at) == (
        "old.one@example.com",
        "Olga",
        captured_at,
    )
    assert person.custom_fields == {"original_source": "hubspot"}
    assert first.utm.source == "trade-show"
    assert (await intake.person(second)).phone == "+12015550199"


async def test_a_bad_row_is_named_by_its_number_and_field_and_the_good_ones_go_in(
    intake: Intake,
) -> None:
    now = datetime.now(UTC).isoformat()
    response = await intake.client.post(
        "/v1/leads/import",
        json={
            "form_id": "shop",
            "leads": [
                {"email": "ok@example.com", "captured_at": now},
                {"email": "not-an-email", "captured_at": now},
            ],
        },
        headers=ADMIN,
    )
    unknown_form = await intake.client.post(
        "/v1/leads/import",
        json={"form_id": "nope", "leads": [{"email": "new@example.com", "captured_at": now}]},
        headers=ADMIN,
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["rows"], body["imported"], body["failed"]) == ("done", 2, 1, 1)
    [error] = body["errors"]
    assert (error["row"], error["field"]) == (2, "email")
    assert body["lead_ids"][1] is None
    assert unknown_form.status_code == 404
    assert await intake.val("SELECT array_agg(email) FROM leads") == ["ok@example.com"]
    assert await intake.count("imports") == 1  # the refused request left nothing
