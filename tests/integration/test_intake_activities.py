"""Activities on the real database: internal and public callers, dedupe, anonymous visitors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from funnel_contracts import ActivityRecorded, LeadCapturedV2
from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
ORIGIN = "https://shop.example.com"
VISITOR = "v-7f3a9c2e1b"
T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap) as running:
        running.form = await running.create_form("shop", allowed_origins=[ORIGIN])  # type: ignore[attr-defined]
        yield running


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


async def _lead(intake: Intake, email: str) -> str:
    response = await intake.client.post("/v1/forms/shop/submissions", json={"email": email})
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def _post(intake: Intake, activities: list[dict[str, Any]], **kwargs: Any) -> Any:
    return await intake.client.post("/v1/activities", json={"activities": activities}, **kwargs)


async def test_internal_activities_by_lead_id_and_email_are_emitted(intake: Intake) -> None:
    lead_id = await _lead(intake, "buyer@example.com")
    response = await _post(
        intake,
        [
            {"type": "pricing_viewed", "occurred_at": at(1), "lead_id": lead_id},
            {
                "type": "purchase_completed",
                "occurred_at": at(5),
                "email": " Buyer@Example.com",
                "amount": "49.90",
                "currency": "EUR",
                "order_id": "ord-1",
            },
            {
                "type": "webinar_attended",
                "occurred_at": at(9),
                "lead_id": lead_id,
                "properties": {"minutes": 42},
            },
        ],
        headers=ADMIN,
    )

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3
    events = await intake.events("funnel.activity.recorded.v1")
    assert [e.activity_type for e in events] == [
        "pricing_viewed",
        "purchase_completed",
        "webinar_attended",
    ]
    assert all(isinstance(e, ActivityRecorded) and str(e.lead_id) == lead_id for e in events)
    purchase = events[1]
    assert isinstance(purchase, ActivityRecorded)
    assert (purchase.amount, purchase.currency, purchase.order_id) == (
        Decimal("49.90"),
        "EUR",
        "ord-1",
    )
    assert purchase.occurred_at == T0 + timedelta(minutes=5)
    assert events[2].properties == {"minutes": 42}  # type: ignore[attr-defined]


async def test_a_batch_looks_up_only_the_kinds_of_people_it_names(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page view by lead id looks up no email and no visitor (its lead is read by the
    statement that stores it, decision 0082); one naming an email looks up that email alone
    (and no key: it has nothing to seal)."""
    from lead_intake.activities import store

    asked: list[tuple[str, list[Any]]] = []
    for name in ("leads_and_keys", "leads_by_email", "leads_of_visitors"):
        real = getattr(store, name)

        async def spy(conn: Any, keys: list[Any], real: Any = real, name: str = name) -> Any:
            asked.append((name, list(keys)))
            return await real(conn, keys)

        monkeypatch.setattr(store, name, spy)
    lead_id = await _lead(intake, "viewer@example.com")
    asked.clear()
    by_id = await _post(
        intake, [{"type": "page_view", "occurred_at": at(1), "lead_id": lead_id}], headers=ADMIN
    )
    assert by_id.status_code == 202, by_id.text
    assert by_id.json()["accepted"] == 1
    # Nothing to seal: the lead is looked up by the statement that stores the view.
    assert asked == []
    asked.clear()
    by_email = await _post(
        intake,
        [{"type": "page_view", "occurred_at": at(2), "email": "viewer@example.com"}],
        headers=ADMIN,
    )
    assert by_email.json()["accepted"] == 1
    assert asked == [("leads_by_email", ["viewer@example.com"])]
    events = await intake.events("funnel.activity.recorded.v1")
    assert [str(e.lead_id) for e in events] == [lead_id, lead_id]


async def test_the_same_order_counts_once_and_a_retried_batch_changes_nothing(
    intake: Intake,
) -> None:
    lead_id = await _lead(intake, "twice@example.com")
    purchase = {
        "id": str(uuid4()),
        "type": "purchase_completed",
        "occurred_at": at(1),
        "lead_id": lead_id,
        "amount": "10",
        "currency": "USD",
        "order_id": "ord-42",
    }
    first = await _post(intake, [purchase], headers=ADMIN)
    retry = await _post(intake, [purchase], headers=ADMIN)
    again_other_id = await _post(intake, [{**purchase, "id": str(uuid4())}], headers=ADMIN)

    assert first.json()["accepted"] == 1
    assert retry.json() == {
        **first.json(),
        "accepted": 0,
        "duplicates": 1,
        "items": [{"id": purchase["id"], "status": "duplicate"}],
    }
    assert again_other_id.json()["duplicates"] == 1
    assert len(await intake.events("funnel.activity.recorded.v1")) == 1


async def test_anonymous_visits_are_linked_when_the_visitor_fills_a_form(intake: Intake) -> None:
    key = intake.form["public_key"]  # type: ignore[attr-defined]
    visits = [
        {
            "type": "page_view",
            "occurred_at": at(0),
            "visitor_id": VISITOR,
            "utm": {"source": "google"},
        },
        {"type": "pricing_viewed", "occurred_at": at(3), "visitor_id": VISITOR},
    ]
    anonymous = await _post(intake, visits, params={"key": key}, headers={"origin": ORIGIN})

    assert anonymous.status_code == 202, anonymous.text
    assert anonymous.headers["access-control-allow-origin"] == ORIGIN
    assert anonymous.json()["pending"] == 2
    assert await intake.events() == []  # nobody to attribute them to yet

    submitted = await intake.client.post(
        "/v1/forms/shop/submissions", json={"email": "anon@example.com", "visitor_id": VISITOR}
    )
    later = await _post(
        intake,
        [{"type": "cart_created", "occurred_at": at(20), "visitor_id": VISITOR}],
        headers={"x-funnel-key": key},
    )

    lead_id = submitted.json()["lead_id"]
    assert later.json()["pending"] == 0
    events = await intake.events()
    assert isinstance(events[0], LeadCapturedV2)
    assert events[0].visitor_id is None  # a visitor id names a browser: sealed only
    assert (await intake.person(events[0])).visitor_id == VISITOR
    assert all(e.visitor_id is None for e in events[1:])  # type: ignore[attr-defined]
    activities = events[1:]
    assert [e.activity_type for e in activities] == ["page_view", "pricing_viewed", "cart_created"]  # type: ignore[attr-defined]
    assert all(str(e.lead_id) == lead_id for e in activities)
    first = activities[0]
    assert isinstance(first, ActivityRecorded)
    assert first.occurred_at == T0  # the original event time, not the time of linking
    assert first.utm is not None
    assert first.utm.source == "google"


@pytest.mark.parametrize(
    ("activities", "auth", "status", "field"),
    [
        (
            [
                {
                    "type": "page_view",
                    "occurred_at": "2026-11-01T09:00:00+00:00",
                    "email": "x@example.com",
                }
            ],
            "public",
            422,
            "activities.0.email",
        ),
        (
            [
                {
                    "type": "page_view",
                    "occurred_at": "2026-11-01T09:00:00+00:00",
                    "visitor_id": VISITOR,
                }
            ],
            "none",
            401,
            None,
        ),
        (
            [
                {
                    "type": "page_view",
                    "occurred_at": "2026-11-01T09:00:00+00:00",
                    "lead_id": "0b9d6f0e-1111-4c3a-9f00-000000000000",
                }
            ],
            "admin",
            422,
            "activities.0.lead_id",
        ),
        (
            [
                {
                    "type": "page_view",
                    "occurred_at": "2026-11-01T09:00:00+00:00",
                    "email": "nobody@example.com",
                }
            ]
            * 3
            + [{"type": "page_view", "occurred_at": "yesterday", "email": "nobody@example.com"}],
            "admin",
            422,
            "activities.3.occurred_at",
        ),
        (
            [{"type": "page_view", "occurred_at": "2026-11-01T09:00:00", "visitor_id": VISITOR}],
            "admin",
            422,
            "activities.0.occurred_at",
        ),
        (
            [
                {
                    "type": "purchase_completed",
                    "occurred_at": "2026-11-01T09:00:00+00:00",
                    "visitor_id": VISITOR,
                }
            ],
            "admin",
            422,
            "activities.0",
        ),
        (
            [
                {
                    "type": "Bad Type",
                    "occurred_at": "2026-11-01T09:00:00+00:00",
                    "visitor_id": VISITOR,
                }
            ],
            "admin",
            422,
            "activities.0.type",
        ),
        (
            [
                {
                    "type": "page_view",
                    "occurred_at": "2026-11-01T09:00:00+00:00",
                    "visitor_id": VISITOR,
                }
            ]
            * 501,
            "admin",
            422,
            "activities",
        ),
        ([], "admin", 422, "activities"),
    ],
    ids=[
        "public-email",
        "no-key",
        "unknown-lead-id",
        "fourth-item-time",
        "naive-time",
        "purchase-no-price",
        "bad-type",
        "501",
        "empty",
    ],
)
async def test_bad_activity_batches_are_refused_whole(
    intake: Intake, activities: list[dict[str, Any]], auth: str, status: int, field: str | None
) -> None:
    kwargs: dict[str, Any] = {
        "admin": {"headers": ADMIN},
        "public": {"params": {"key": intake.form["public_key"]}},  # type: ignore[attr-defined]
        "none": {},
    }[auth]
    response = await _post(intake, activities, **kwargs)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]], response.json()
    assert await intake.count("activities") == 0


async def test_a_public_key_from_another_origin_or_unknown_is_refused(intake: Intake) -> None:
    batch = [{"type": "page_view", "occurred_at": at(0), "visitor_id": VISITOR}]
    wrong_origin = await _post(
        intake,
        batch,
        params={"key": intake.form["public_key"]},
        headers={"origin": "https://evil.example"},  # type: ignore[attr-defined]
    )
    unknown = await _post(intake, batch, params={"key": "pk_not-a-key"})

    assert wrong_origin.status_code == 403
    assert unknown.status_code == 401
    assert await intake.count("activities") == 0
