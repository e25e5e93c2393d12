"""Form posts on the real database: every encoding, identity, touches, CORS, idempotency."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID

import pytest

from funnel_contracts import LeadCapturedV2, LeadUpdatedV2
from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import Intake, running_intake

pytestmark = pytest.mark.integration
ORIGIN = "https://shop.example.com"


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap) as running:
        await running.create_form(
            "spring",
            allowed_origins=[ORIGIN],
            default_phone_region="SE",
            thank_you_url="https://shop.example.com/thanks",
            consent_text="Send me offers by email.",
            consent_version="2026-01",
            consent_categories=["marketing"],
            fields=[
                {"name": "company_size", "type": "select", "options": ["1-10", "11-50", "50+"]},
                {"name": "phone", "type": "tel"},
            ],
        )
        yield running


async def test_json_post_captures_a_normalized_lead_with_its_touch(intake: Intake) -> None:
    response = await intake.client.post(
        "/v1/forms/spring/submissions",
        json={
            "email": "  Ada.Lovelace@Example.COM ",
            "first_name": "  Ada  ",
            "phone": "070-123 45 67",
            "landing_page": "https://shop.example.com/spring?utm_source=google&utm_medium=cpc",
            "utm_campaign": "spring-sale",
            "referrer": "https://www.google.com/",
            "consent": True,
            "company_size": "11-50",
            "budget": "10k",
            "need": "A CRM for Ada's team of 12",
        },
        headers={"user-agent": "Mozilla/5.0 test"},
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["new_lead"] is True
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    assert str(event.lead_id) == body["lead_id"]
    assert str(event.submission_id) == body["submission_id"]
    person = await intake.person(event)
    assert (person.email, person.first_name, person.phone) == (
        "ada.lovelace@example.com",
        "Ada",
        "+46701234567",
    )
    assert (event.has_email, event.has_phone) == (True, True)
    for plain in (b"ada.lovelace@example.com", b"Ada", b"+46701234567", b"11-50"):
        assert plain not in event.model_dump_json().encode()  # sealed, never in the clear
    assert (event.utm.source, event.utm.medium, event.utm.campaign) == (
        "google",
        "cpc",
        "spring-sale",
    )
    # In the clear: the pages' host and path, the consent's categories; the rest sealed.
    assert (event.landing_page, event.referrer) == ("shop.example.com/spring", "www.google.com/")
    assert event.visitor_id is None
    assert person.landing_page == "https://shop.example.com/spring?utm_source=google&utm_medium=cpc"
    assert person.referrer == "https://www.google.com/"
    assert b"utm_medium=cpc" not in event.model_dump_json().encode()
    assert person.custom_fields == {"company_size": "11-50"}
    # A choice in the clear (the tracker's rules match it); words only sealed (decision 0054).
    assert event.qualification == {"budget": "10k", "need": "*"}
    assert b"CRM for Ada" not in event.model_dump_json().encode()
    assert person.qualification == {"budget": "10k", "need": "A CRM for Ada's team of 12"}
    assert event.consent is not None
    assert event.consent.text == ""
    assert person.consent_text == "Send me offers by email."
    assert event.consent.categories == ("marketing",)
    row = await intake.pool.fetchrow("SELECT user_agent, ip_truncated FROM submissions")
    assert row["user_agent"] == "Mozilla/5.0 test"
    assert row["ip_truncated"] == "203.0.113.0/24"  # never the whole address


async def test_a_second_submission_updates_the_same_lead_keeping_the_first_touch(
    intake: Intake,
) -> None:
    first = await intake.client.post(
        "/v1/forms/spring/submissions",
        json={"email": "grace@example.com", "utm_source": "newsletter", "first_name": "Grace"},
    )
    second = await intake.client.post(
        "/v1/forms/spring/submissions",
        json={"email": " GRACE@example.com", "utm_source": "linkedin", "last_name": "Hopper"},
    )

    assert second.status_code == 202
    assert second.json()["new_lead"] is False
    assert second.json()["lead_id"] == first.json()["lead_id"]
    captured, updated = await intake.events()
    assert isinstance(captured, LeadCapturedV2)
    assert isinstance(updated, LeadUpdatedV2)
    assert updated.lead_id == captured.lead_id
    assert updated.last_touch_utm.source == "linkedin"
    latest = await intake.person(updated)
    assert (latest.email, latest.first_name, latest.last_name) == (
        "grace@example.com",
        "Grace",
        "Hopper",
    )
    lead = await intake.pool.fetchrow("SELECT first_touch, last_touch FROM leads")
    assert lead["first_touch"]["utm"] == {"source": "newsletter"}
    assert lead["last_touch"]["utm"] == {"source": "linkedin"}
    assert await intake.count("leads") == 1
    assert await intake.count("submissions") == 2


async def test_a_phone_finds_a_returning_person_and_alone_captures_a_new_one(
    intake: Intake,
) -> None:
    first = await intake.client.post(
        "/v1/forms/spring/submissions", json={"email": "linus@example.com", "phone": "0701234567"}
    )
    await intake.create_form(
        "callback",
        default_phone_region="SE",
        fields=[{"name": "email", "required": False}, {"name": "phone", "required": True}],
    )
    again = await intake.client.post(
        "/v1/forms/callback/submissions", json={"phone": "+46 70 123 45 67"}
    )
    stranger = await intake.client.post(
        "/v1/forms/callback/submissions", json={"phone": "+46 70 999 99 99"}
    )

    stranger_again = await intake.client.post(
        "/v1/forms/callback/submissions", json={"phone": "070 999 99 99", "first_name": "Ola"}
    )

    assert again.status_code == 202
    assert again.json()["lead_id"] == first.json()["lead_id"]
    # Identity is the email, else the phone: a phone alone is a person of its own.
    assert stranger.status_code == 202, stranger.text
    assert stranger.json()["new_lead"] is True
    assert stranger_again.json()["lead_id"] == stranger.json()["lead_id"]
    assert stranger_again.json()["new_lead"] is False
    assert await intake.count("leads") == 2
    captured = [e for e in await intake.events() if isinstance(e, LeadCapturedV2)]
    phone_only = captured[-1]
    assert str(phone_only.lead_id) == stranger.json()["lead_id"]
    assert (phone_only.has_email, phone_only.has_phone) == (False, True)
    person = await intake.person(phone_only)
    assert (person.email, person.phone) == (None, "+46709999999")


async def test_a_plain_html_form_post_is_redirected_to_the_thank_you_page(intake: Intake) -> None:
    response = await intake.client.post(
        "/v1/forms/spring/submissions",
        data={"email": "plain@example.com", "utm_source": "flyer"},
        headers={"referer": "https://shop.example.com/spring?utm_medium=print"},
    )

    assert response.status_code == 303
    assert response.headers["location"] == "https://shop.example.com/thanks"
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    assert event.landing_page == "shop.example.com/spring"  # the full URL is sealed
    assert (await intake.person(event)).landing_page == (
        "https://shop.example.com/spring?utm_medium=print"
    )
    assert (event.utm.source, event.utm.medium) == ("flyer", "print")


async def test_multipart_from_a_script_gets_json_and_an_inline_message(intake: Intake) -> None:
    await intake.create_form("inline", thank_you_message="Thanks <3, we'll call you.")
    html_post = await intake.client.post(
        "/v1/forms/inline/submissions", files={"email": (None, "multi@example.com")}
    )
    fetch_post = await intake.client.post(
        "/v1/forms/inline/submissions",
        files={"email": (None, "multi2@example.com"), "first_name": (None, "Mei")},
        headers={"accept": "application/json"},
    )

    assert html_post.status_code == 200
    assert html_post.headers["content-type"].startswith("text/html")
    assert "Thanks &lt;3, we&#x27;ll call you." in html_post.text
    assert html_post.headers["content-security-policy"].startswith("default-src 'none'")
    assert fetch_post.status_code == 202
    assert fetch_post.json()["message"] == "Thanks <3, we'll call you."
    assert fetch_post.json()["redirect_url"] is None
    assert await intake.count("leads") == 2


async def test_cors_answers_per_form_including_preflight(intake: Intake) -> None:
    preflight = await intake.client.options(
        "/v1/forms/spring/submissions",
        headers={"origin": ORIGIN, "access-control-request-method": "POST"},
    )
    refused_preflight = await intake.client.options(
        "/v1/forms/spring/submissions", headers={"origin": "https://evil.example"}
    )
    allowed = await intake.client.post(
        "/v1/forms/spring/submissions",
        json={"email": "cors@example.com"},
        headers={"origin": ORIGIN},
    )
    refused = await intake.client.post(
        "/v1/forms/spring/submissions",
        json={"email": "evil@example.com"},
        headers={"origin": "https://evil.example"},
    )

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "Idempotency-Key" in preflight.headers["access-control-allow-headers"]
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert refused_preflight.status_code == 403
    assert allowed.status_code == 202
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in refused.json()["errors"]] == ["origin"]
    assert await intake.count("leads") == 1


async def test_an_idempotency_key_makes_a_retry_safe(intake: Intake) -> None:
    body = {"email": "retry@example.com", "first_name": "Rita"}
    headers = {"idempotency-key": "abc-123"}
    first = await intake.client.post("/v1/forms/spring/submissions", json=body, headers=headers)
    retry = await intake.client.post("/v1/forms/spring/submissions", json=body, headers=headers)
    other = await intake.client.post(
        "/v1/forms/spring/submissions", json={**body, "first_name": "Other"}, headers=headers
    )

    assert first.status_code == retry.status_code == 202
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert [e["field"] for e in other.json()["errors"]] == ["Idempotency-Key"]
    assert await intake.count("submissions") == 1
    assert len(await intake.events()) == 1


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        (
            b'{"email": "big@example.com", "x": "' + b"a" * 70_000 + b'"}',
            "application/json",
            413,
            "body",
        ),
        (b"email=a@example.com", "text/plain", 415, "content-type"),
        (b"{nope", "application/json", 400, "body"),
        (
            b'{"email": "a@example.com", "company_size": "huge"}',
            "application/json",
            422,
            "company_size",
        ),
        (b'{"email": "a@example.com", "phone": "12"}', "application/json", 422, "phone"),
        (b'{"email": "a@example.com", "surprise": "1"}', "application/json", 422, "surprise"),
        (
            b"email=a@example.com&email=b@example.com",
            "application/x-www-form-urlencoded",
            422,
            "email",
        ),
        (b'{"email": "a@example.com", "consent": "maybe"}', "application/json", 422, "consent"),
        (
            b'{"email": "a@example.com", "first_name": "A\\u0000"}',
            "application/json",
            422,
            "first_name",
        ),
        (
            b"email=a%40example.com&last_name=%00",
            "application/x-www-form-urlencoded",
            422,
            "last_name",
        ),
    ],
    ids=[
        "too-large",
        "text-plain",
        "malformed",
        "bad-select",
        "bad-phone",
        "unknown",
        "twice",
        "consent",
        "nul-json",
        "nul-form",
    ],
)
async def test_bad_posts_get_a_problem_naming_the_field_and_store_nothing(
    intake: Intake, content: bytes, content_type: str, status: int, field: str
) -> None:
    response = await intake.client.post(
        "/v1/forms/spring/submissions", content=content, headers={"content-type": content_type}
    )

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await intake.count("leads") == 0
    assert await intake.count("outbox") == 0


async def test_a_filled_honeypot_gets_the_normal_answer_and_is_dropped(intake: Intake) -> None:
    response = await intake.client.post(
        "/v1/forms/spring/submissions",
        json={"email": "bot@example.com", "website": "http://spam.example"},
    )
    metrics = await intake.client.get("/metrics")

    assert response.status_code == 202
    UUID(response.json()["lead_id"])
    assert await intake.count("leads") == 0
    assert await intake.count("outbox") == 0
    assert 'funnel_intake_honeypot_dropped_total{form_id="spring"}' in metrics.text


async def test_consent_required_by_the_form_is_enforced(intake: Intake) -> None:
    await intake.create_form("gdpr", consent_text="I agree.", consent_required=True)
    missing = await intake.client.post(
        "/v1/forms/gdpr/submissions", json={"email": "c@example.com"}
    )
    given = await intake.client.post(
        "/v1/forms/gdpr/submissions",
        data={"email": "c@example.com", "consent": "on"},
        headers={"accept": "application/json"},
    )

    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["consent"]
    assert given.status_code == 202
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    assert event.consent is not None
    assert event.consent.text == ""  # the text the person saw travels sealed
    assert (await intake.person(event)).consent_text == "I agree."
    assert isinstance(event.consent.given_at, datetime)


async def test_unknown_fields_are_kept_when_the_form_allows_them(intake: Intake) -> None:
    await intake.create_form("open", allow_unknown_fields=True)
    response = await intake.client.post(
        "/v1/forms/open/submissions",
        content=json.dumps({"email": "o@example.com", "favourite_colour": "teal"}),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 202
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    assert (await intake.person(event)).custom_fields == {"favourite_colour": "teal"}


async def test_rate_limits_per_ip_and_per_form_answer_429_with_retry_after(
    intake: Intake,
) -> None:
    await intake.create_form(
        "limited", rate_limit_per_ip="3/minute", rate_limit_per_form="5/minute"
    )
    statuses = [
        (
            await intake.client.post(
                "/v1/forms/limited/submissions", json={"email": f"r{i}@example.com"}
            )
        ).status_code
        for i in range(4)
    ]
    async with intake.client_from("198.51.100.9") as other:
        other_statuses = [
            (
                await other.post(
                    "/v1/forms/limited/submissions", json={"email": f"o{i}@example.com"}
                )
            ).status_code
            for i in range(3)
        ]
        limited = await other.post("/v1/forms/limited/submissions", json={"email": "x@example.com"})

    assert statuses == [202, 202, 202, 429]
    assert other_statuses == [202, 202, 429]  # the form's 5/minute ran out
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["type"] == "urn:funnel:problem:rate-limited"
    assert await intake.count("leads") == 5


async def test_expired_idempotency_keys_are_purged(intake: Intake) -> None:
    from lead_intake.submissions import store as idempotency

    await intake.client.post(
        "/v1/forms/spring/submissions",
        json={"email": "old@example.com"},
        headers={"idempotency-key": "old-key"},
    )
    await intake.client.post(
        "/v1/forms/spring/submissions",
        json={"email": "new@example.com"},
        headers={"idempotency-key": "new-key"},
    )
    await intake.pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old-key'"
    )
    async with intake.pool.acquire() as conn:
        deleted = await idempotency.purge_expired(conn, 24)

    assert deleted == 1
    assert await intake.val("SELECT array_agg(key) FROM idempotency_keys") == ["new-key"]
