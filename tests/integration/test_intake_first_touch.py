"""The first touch, kept (on the real database): an anonymous visitor's first visit with UTM
tags becomes the person's first touchpoint when they identify through a form, in the lead
and in its funnel.lead.captured.v2; a person known already keeps theirs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from funnel_contracts import LeadCapturedV2
from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import Intake, running_intake

pytestmark = pytest.mark.integration
ORIGIN = "https://shop.example"
VISITOR = "visitor-first-touch-01"


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap) as running:
        running.form = await running.create_form("shop", allowed_origins=[ORIGIN])  # type: ignore[attr-defined]
        yield running


def ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def _visits(intake: Intake, visitor: str, visits: list[dict[str, Any]]) -> None:
    key = intake.form["public_key"]  # type: ignore[attr-defined]
    response = await intake.client.post(
        "/v1/activities",
        json={"activities": [{**v, "visitor_id": visitor} for v in visits]},
        params={"key": key},
        headers={"origin": ORIGIN},
    )
    assert response.status_code == 202, response.text


async def test_the_first_tagged_visit_is_the_first_touch_when_the_visitor_identifies(
    intake: Intake,
) -> None:
    await _visits(intake, VISITOR, [
        {"type": "page_view", "occurred_at": ago(90), "page_url": "https://shop.example/"},
        {"type": "page_view", "occurred_at": ago(60), "page_url": "https://shop.example/a",
         "utm": {"source": "newsletter", "campaign": "spring"}},
        {"type": "page_view", "occurred_at": ago(30), "utm": {"source": "google"}},
    ])  # fmt: skip
    posted = await intake.client.post(
        "/v1/forms/shop/submissions",
        json={"email": "vera@example.com", "visitor_id": VISITOR, "utm_source": "direct"},
    )
    assert posted.status_code == 202, posted.text

    [event] = await intake.events("funnel.lead.captured.v2")
    assert isinstance(event, LeadCapturedV2)
    assert (event.utm.source, event.utm.campaign) == ("newsletter", "spring")
    # In the clear the page's host and path only; the whole URL is sealed with the person.
    assert event.landing_page == "shop.example/a"
    assert (await intake.person(event)).landing_page == "https://shop.example/a"
    first = await intake.val("SELECT first_touch FROM leads WHERE id = $1", event.lead_id)
    assert first["utm"] == {"source": "newsletter", "campaign": "spring"}
    # the submission keeps what it was posted with
    assert await intake.val("SELECT utm FROM submissions") == {"source": "direct"}
    assert len(await intake.events("funnel.activity.recorded.v1")) == 3


async def test_a_person_known_already_keeps_their_first_touch(intake: Intake) -> None:
    first = await intake.client.post(
        "/v1/forms/shop/submissions", json={"email": "known@example.com", "utm_source": "fair"}
    )
    assert first.status_code == 202
    await _visits(intake, "visitor-first-touch-02", [
        {"type": "page_view", "occurred_at": ago(5), "utm": {"source": "ads"}},
    ])  # fmt: skip
    again = await intake.client.post(
        "/v1/forms/shop/submissions",
        json={"email": "known@example.com", "visitor_id": "visitor-first-touch-02"},
    )
    assert again.status_code == 202
    lead_first = await intake.val(
        "SELECT first_touch FROM leads WHERE id = $1", first.json()["lead_id"]
    )
    assert lead_first["utm"] == {"source": "fair"}


async def test_without_tagged_visits_the_form_post_is_the_first_touch(intake: Intake) -> None:
    await _visits(intake, "visitor-first-touch-03", [
        {"type": "page_view", "occurred_at": ago(5)},
    ])  # fmt: skip
    await intake.client.post(
        "/v1/forms/shop/submissions",
        json={"email": "plain@example.com", "visitor_id": "visitor-first-touch-03",
              "utm_source": "direct"},
    )  # fmt: skip
    [event] = await intake.events("funnel.lead.captured.v2")
    assert isinstance(event, LeadCapturedV2)
    assert event.utm.source == "direct"
