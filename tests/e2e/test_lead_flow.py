"""One lead through all four services, as real processes on the real broker and database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from funnel_contracts.topics import LEAD_EVENTS, STAGE_EVENTS, dead_letter_topic
from funnel_devstack.demo import demo_payloads, unique_people
from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("e2e")
    try:
        yield stack
    finally:
        stop_stack(stack, "e2e")


@pytest.fixture(scope="module")
def client(stack: Stack) -> StackClient:
    return StackClient(stack)


async def test_200_posts_give_exact_leads_and_one_welcome_each(client: StackClient) -> None:
    payloads = demo_payloads(200, seed=11, repeat_share=0.15)
    people = unique_people(payloads)
    assert people < 200  # the data set does repeat people

    statuses = await client.post_many(payloads)

    assert statuses == [202] * 200
    snapshot = await eventually(client.snapshot, lambda s: s["total"] >= people)
    assert snapshot["total"] == people
    assert snapshot["stages"] == [{"stage": "awareness", "position": 0, "leads": people}]
    assert await client.sql("SELECT count(*) FROM intake.leads") == people
    assert await client.sql("SELECT count(*) FROM intake.submissions") == 200
    await eventually(client.mail_count, lambda n: n >= people)
    final = await settled(client.mail_count)  # nothing more arrives afterwards
    assert final == people
    recipients = client.mail_recipients()
    assert set(recipients.values()) == {1}
    assert set(recipients) == {p["email"].strip().lower() for p in payloads}


async def test_journey_and_touches_explain_where_a_lead_is(client: StackClient) -> None:
    response = await client.post_form({"email": "journey@example.com", "first_name": "Jo"})
    assert response.status_code == 202
    lead_id = response.json()["lead_id"]

    journey = await eventually(
        lambda: client.get("stage-tracker", f"/v1/leads/{lead_id}/journey"),
        lambda r: r.status_code == 200,
    )
    body = journey.json()
    assert body["current_stage"] == "awareness"
    assert body["funnel_id"] == "digital-sales"
    [move] = body["transitions"]
    assert move["from_stage"] is None
    assert move["to_stage"] == "awareness"
    assert move["cause_event_type"] == "funnel.lead.captured.v2"
    touches = await eventually(
        lambda: client.get("notifier", f"/v1/leads/{lead_id}/touches"),
        lambda r: r.status_code == 200 and [t["status"] for t in r.json()["touches"]] == ["sent"],
    )
    [touch] = touches.json()["touches"]
    assert touch["playbook"] == "welcome"
    assert touch["message_id"] == f"<touch-{touch['id']}@funnel.example>"


@pytest.mark.parametrize(
    ("body", "content_type", "form_id", "status", "field"),
    [
        (b"email=a@example.com", "text/plain", "demo", 415, "content-type"),
        (b"{not json", "application/json", "demo", 400, "body"),
        (json.dumps({"first_name": "No Email"}).encode(), "application/json", "demo", 422, "email"),
        (json.dumps({"email": "not-an-email"}).encode(), "application/json", "demo", 422, "email"),
        (
            json.dumps({"email": "a@example.com", "x": 1}).encode(),
            "application/json",
            "demo",
            422,
            "x",
        ),
        (
            json.dumps({"email": "ok@example.com"}).encode(),
            "application/json",
            "nope",
            404,
            "form_id",
        ),
        (b"[1, 2]", "application/json", "demo", 422, "body"),
    ],
    ids=[
        "not-json-type",
        "malformed",
        "no-email",
        "bad-email",
        "unknown-field",
        "unknown-form",
        "array",
    ],
)
async def test_bad_posts_get_a_problem_naming_the_field_and_store_nothing(
    client: StackClient, body: bytes, content_type: str, form_id: str, status: int, field: str
) -> None:
    import httpx

    leads_before = await client.sql("SELECT count(*) FROM intake.leads")
    outbox_before = await client.sql("SELECT count(*) FROM intake.submissions")
    async with httpx.AsyncClient(base_url=client.stack.url("lead-intake")) as c:
        response = await c.post(
            f"/v1/forms/{form_id}/submissions", content=body, headers={"content-type": content_type}
        )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert field in [e["field"] for e in problem["errors"]]
    assert await client.sql("SELECT count(*) FROM intake.leads") == leads_before
    assert await client.sql("SELECT count(*) FROM intake.submissions") == outbox_before


async def test_internal_apis_need_a_key_with_the_scope(client: StackClient) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=client.stack.url("reporting")) as c:
        anonymous = await c.get("/v1/funnels/digital-sales/snapshot")
        wrong = await c.get(
            "/v1/funnels/digital-sales/snapshot", headers={"Authorization": "Bearer not-the-key"}
        )
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")


async def test_poison_goes_to_the_dead_letter_topic_and_the_flow_goes_on(
    stack: Stack, client: StackClient
) -> None:
    marker = uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(LEAD_EVENTS, key=b"poison", value=b"garbage " + marker)
        await producer.send_and_wait(
            LEAD_EVENTS,
            key=b"poison",
            value=json.dumps({"lead_id": "nope"}).encode(),
            headers=[
                ("ce_id", marker),
                ("ce_source", b"test"),
                ("ce_specversion", b"1.0"),
                ("ce_type", b"funnel.lead.captured.v1"),
                ("ce_subject", b"poison"),
                ("ce_time", b"2026-11-01T00:00:00Z"),
                ("content-type", b"application/json"),
            ],
        )
    finally:
        await producer.stop()
    # The consumers keep going: a lead posted after the poison still arrives everywhere.
    response = await client.post_form({"email": f"after-poison-{marker.decode()}@example.com"})
    lead_id = response.json()["lead_id"]
    journey = await eventually(
        lambda: client.get("stage-tracker", f"/v1/leads/{lead_id}/journey"),
        lambda r: r.status_code == 200,
    )
    assert journey.json()["current_stage"] == "awareness"

    dead = await _read_topic(
        stack,
        dead_letter_topic(LEAD_EVENTS),
        until=lambda rs: (
            len([r for r in rs if marker in r.value or dict(r.headers).get("ce_id") == marker]) >= 6
        ),
    )
    ours = [r for r in dead if marker in r.value or dict(r.headers).get("ce_id") == marker]
    groups = sorted(dict(r.headers)["dlq_consumer_group"].decode() for r in ours)
    # Every consumer of the lead topic dead-lettered both poison messages, once each.
    assert groups == [
        "notifier",
        "notifier",
        "reporting",
        "reporting",
        "stage-tracker",
        "stage-tracker",
    ]
    assert all(dict(r.headers)["dlq_error"] for r in ours)


async def test_the_trace_follows_the_lead_from_http_through_kafka(
    stack: Stack, client: StackClient
) -> None:
    trace_id = uuid4().hex
    traceparent = f"00-{trace_id}-{uuid4().hex[:16]}-01"
    response = await client.post_form(
        {"email": f"trace-{trace_id}@example.com"}, headers={"traceparent": traceparent}
    )
    lead_id = UUID(response.json()["lead_id"])

    def carries_lead(records: list) -> bool:  # type: ignore[type-arg]
        return any(r.key == str(lead_id).encode() for r in records)

    captured = await _read_topic(stack, LEAD_EVENTS, until=carries_lead)
    changed = await _read_topic(stack, STAGE_EVENTS, until=carries_lead)
    for records in (captured, changed):
        [record] = [r for r in records if r.key == str(lead_id).encode()]
        assert dict(record.headers)["traceparent"].decode().split("-")[1] == trace_id


async def _read_topic(stack: Stack, topic: str, until, timeout: float = 60):  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list = []  # type: ignore[type-arg]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def test_every_service_exposes_its_operational_metrics(client: StackClient) -> None:
    """Runs after the flows above: the counters must reflect them, not merely exist."""
    from prometheus_client.parser import text_string_to_metric_families

    def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                found.setdefault(s.name, []).append((s.labels, s.value))
        return found

    scraped = {}
    for service in ("lead-intake", "stage-tracker", "notifier", "reporting"):
        response = await client.get(service, "/metrics")
        assert response.status_code == 200
        scraped[service] = samples(response.text)

    intake = scraped["lead-intake"]
    posts = [
        v
        for labels, v in intake["funnel_http_requests_total"]
        if labels["route"] == "/v1/forms/{form_id}/submissions" and labels["status"] == "202"
    ]
    assert posts
    assert posts[0] >= 200
    assert "funnel_http_request_duration_seconds_bucket" in intake
    assert sum(v for _, v in intake["funnel_outbox_published_total"]) >= 150
    for service in ("lead-intake", "stage-tracker", "notifier"):
        assert "funnel_outbox_backlog" in scraped[service]
        assert "funnel_outbox_oldest_age_seconds" in scraped[service]
    tracker = scraped["stage-tracker"]
    lag_topics = {labels["topic"] for labels, _ in tracker["funnel_consumer_lag"]}
    assert "funnel.lead-events" in lag_topics
    dead = {labels["topic"]: v for labels, v in tracker["funnel_dead_letters_total"]}
    assert dead.get("funnel.lead-events", 0) >= 2  # the poison test's two records
    touches = scraped["notifier"]["funnel_notifier_touches_total"]
    assert _emails_sent(touches), touches

    async def sent_and_mailed() -> tuple[float, int]:
        text = (await client.get("notifier", "/metrics")).text
        touches = samples(text)["funnel_notifier_touches_total"]
        return _emails_sent(touches), await client.mail_count()

    # One per email the mailbox holds. A touch going out while they are read is in the mailbox
    # before the notifier counts it (the mailbox's 250 comes first): until the two agree.
    sent, mailed = await eventually(sent_and_mailed, lambda got: got[0] == got[1], timeout=30)
    assert sent == mailed


def _emails_sent(touches: list[tuple[dict[str, str], float]]) -> float:
    return sum(
        v for labels, v in touches if labels["channel"] == "email" and labels["outcome"] == "sent"
    )


async def test_a_form_is_saved_only_when_its_funnel_is_published_in_the_tracker(
    stack: Stack,
) -> None:
    """lead-intake asks stage-tracker (its own key, scope leads:read) before saving a form:
    a misspelt funnel would take leads that no stage could ever hold."""
    form = {
        "id": "e2e-funnel-check",
        "funnel_id": "digital-sale",  # one letter short
        "name": "Funnel check",
        "site_url": "https://acme.example",
        "fields": [{"name": "email", "type": "email", "required": True}],
    }
    auth = {"Authorization": f"Bearer {stack.admin_api_key}"}
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), headers=auth) as intake:
        refused = await intake.post("/v1/forms", json=form)
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["errors"] == [
            {"field": "funnel_id", "message": "no published funnel with this id"}
        ]
        assert (await intake.get("/v1/forms/e2e-funnel-check")).status_code == 404

        created = await intake.post("/v1/forms", json={**form, "funnel_id": "subscription"})
        assert created.status_code == 201
        patched = await intake.patch("/v1/forms/e2e-funnel-check", json={"funnel_id": "nope"})
        assert patched.status_code == 422
        assert patched.json()["errors"][0]["field"] == "funnel_id"
        kept = await intake.get("/v1/forms/e2e-funnel-check")
        assert kept.json()["funnel_id"] == "subscription"
        moved = await intake.patch(
            "/v1/forms/e2e-funnel-check", json={"funnel_id": "b2b-sales-cycle"}
        )
        assert moved.status_code == 200
        assert moved.json()["funnel_id"] == "b2b-sales-cycle"
