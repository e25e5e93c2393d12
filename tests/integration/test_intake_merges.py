"""Merging two leads of one person on the real database: by hand (the older survives, the
other's submissions, activities and consent fold into it, it answers with merged_into, one
funnel.lead.merged), by itself when a submission gives a lead found by email the phone of a
person known by that phone alone, and the refusals (422, 404, 410, 409)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from funnel_contracts import LeadMerged, LeadUpdatedV2
from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap) as running:
        await running.create_form(
            "shop", default_phone_region="SE", consent_text="Mail me", consent_categories=["news"]
        )
        await running.create_form(
            "callback",
            default_phone_region="SE",
            fields=[{"name": "email", "required": False}, {"name": "phone", "required": True}],
        )
        yield running


async def _post(intake: Intake, form: str, body: dict[str, Any]) -> str:
    r = await intake.client.post(f"/v1/forms/{form}/submissions", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["lead_id"])


async def _merge(intake: Intake, lead_id: str, other: str) -> Any:
    return await intake.client.post(
        f"/v1/leads/{lead_id}/merge", json={"other_lead_id": other}, headers=ADMIN
    )


async def test_a_merge_folds_the_newer_lead_into_the_older_for_good(intake: Intake) -> None:
    older = await _post(intake, "callback", {"phone": "070 111 11 11", "first_name": "Ola"})
    newer = await _post(
        intake, "shop", {"email": "ola@example.com", "last_name": "Berg", "consent": "yes",
                         "utm_source": "fair"},
    )  # fmt: skip
    activity = await intake.client.post(
        "/v1/activities",
        json={
            "activities": [
                {
                    "lead_id": newer,
                    "type": "page_view",
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
            ]
        },
        headers=ADMIN,
    )
    assert activity.status_code in (200, 202, 207), activity.text

    response = await _merge(intake, newer, older)  # asked from either side: the older survives

    assert response.status_code == 200, response.text
    assert response.json() == {"lead_id": older, "merged_lead_id": newer}
    survivor = (await intake.client.get(f"/v1/leads/{older}", headers=ADMIN)).json()
    gone = (await intake.client.get(f"/v1/leads/{newer}", headers=ADMIN)).json()
    assert gone["merged_into"] == older
    assert survivor["merged_into"] is None
    assert (survivor["email"], survivor["first_name"], survivor["last_name"]) == (
        "ola@example.com", "Ola", "Berg",
    )  # fmt: skip
    assert await intake.val("SELECT count(*) FROM submissions WHERE lead_id = $1", older) == 2
    assert await intake.val("SELECT count(*) FROM activities WHERE lead_id = $1", newer) == 0
    assert await intake.val("SELECT count(*) FROM activities WHERE lead_id = $1", older) == 1
    assert await intake.val("SELECT consent IS NOT NULL FROM leads WHERE id = $1", older)
    [merged] = await intake.events("funnel.lead.merged.v1")
    assert isinstance(merged, LeadMerged)
    assert (str(merged.lead_id), str(merged.merged_lead_id), merged.reason, merged.actor) == (
        older, newer, "manual", "admin",
    )  # fmt: skip
    [update] = [e for e in await intake.events("funnel.lead.updated.v2")
                if isinstance(e, LeadUpdatedV2) and e.source == "merge"]  # fmt: skip
    assert (await intake.person(update)).email == "ola@example.com"
    # Later posts by either address find the survivor.
    assert await _post(intake, "shop", {"email": "ola@example.com"}) == older

    again = await _merge(intake, older, newer)
    assert again.status_code == 409
    assert [e["field"] for e in again.json()["errors"]] == ["other_lead_id"]

    # One person: erasing them erases both leads.
    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "ola@example.com"}, headers=ADMIN
    )
    assert erased.status_code == 202, erased.text
    assert sorted(erased.json()["erased_leads"]) == sorted([older, newer])
    assert await intake.count("subject_keys") == 0


async def test_the_same_phone_on_a_lead_found_by_email_merges_by_itself(intake: Intake) -> None:
    by_phone = await _post(intake, "callback", {"phone": "070 222 22 22"})
    by_email = await _post(intake, "shop", {"email": "pia@example.com"})
    assert by_phone != by_email

    survivor = await _post(intake, "shop", {"email": "pia@example.com", "phone": "0702222222"})

    assert survivor == by_phone  # the older
    [merged] = await intake.events("funnel.lead.merged.v1")
    assert isinstance(merged, LeadMerged)
    assert (str(merged.lead_id), str(merged.merged_lead_id), merged.reason) == (
        by_phone, by_email, "same_phone",
    )  # fmt: skip
    assert await intake.val("SELECT email FROM leads WHERE id = $1", by_phone) == "pia@example.com"


async def test_refusals_name_the_field(intake: Intake) -> None:
    one = await _post(intake, "shop", {"email": "one@example.com"})
    two = await _post(intake, "shop", {"email": "two@example.com"})
    itself = await _merge(intake, one, one)
    unknown = await _merge(intake, one, str(uuid4()))
    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "two@example.com"}, headers=ADMIN
    )
    assert erased.status_code in (200, 202), erased.text
    after_erasure = await _merge(intake, one, two)
    no_key = await intake.client.post(f"/v1/leads/{one}/merge", json={"other_lead_id": two})

    assert (itself.status_code, itself.json()["errors"][0]["field"]) == (422, "other_lead_id")
    assert (unknown.status_code, unknown.json()["errors"][0]["field"]) == (404, "other_lead_id")
    assert after_erasure.status_code == 410
    assert no_key.status_code == 401
    assert await intake.events("funnel.lead.merged.v1") == []


async def test_a_merged_person_is_a_test_lead_only_when_both_leads_were(intake: Intake) -> None:
    """A real person merged with a test lead is real, whichever of the two survives; two test
    leads stay a test lead."""

    async def post(email: str, *, test: bool) -> str:
        r = await intake.client.post(
            "/v1/forms/shop/submissions",
            json={"email": email, **({"test": True} if test else {})},
            headers=ADMIN,
        )
        assert r.status_code == 202, r.text
        return str(r.json()["lead_id"])

    async def merged_is_test(older_test: bool, newer_test: bool, name: str) -> bool:
        older = await post(f"{name}.1@example.com", test=older_test)
        newer = await post(f"{name}.2@example.com", test=newer_test)
        assert await intake.val("SELECT is_test FROM leads WHERE id = $1", older) is older_test
        response = await _merge(intake, newer, older)
        assert response.status_code == 200, response.text
        assert response.json()["lead_id"] == older
        return bool(await intake.val("SELECT is_test FROM leads WHERE id = $1", older))

    assert await merged_is_test(True, False, "tried-then-bought") is False
    assert await merged_is_test(False, True, "bought-then-tried") is False
    assert await merged_is_test(True, True, "both-tries") is True
