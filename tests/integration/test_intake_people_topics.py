"""The people workspace's events as they reach Kafka (the outbox relay on): a correction's
sealed funnel.lead.updated.v2, and an offline touch with the logging key's name as actor."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer

from funnel_contracts import EventData, LeadUpdatedV2, parse_event
from funnel_contracts.envelope import decode
from funnel_contracts.sealed import unseal
from funnel_contracts.topics import ACTIVITY_EVENTS, LEAD_EVENTS
from funnel_devstack.stack import Stack
from funnel_servicekit.auth import hash_key
from funnel_servicekit.kafka import ensure_topics
from tests.integration.test_intake_harness import Intake, running_intake

pytestmark = pytest.mark.integration
ANA_KEY = "intake-test-ana-key-0123456789abcdefghij"
ANA = {"Authorization": f"Bearer {ANA_KEY}"}


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    await ensure_topics(infra.kafka_bootstrap, 3)
    keys = [
        {
            "name": "ana",
            "sha256": hash_key(ANA_KEY),
            "scopes": ["leads:read", "leads:write", "pii:read"],
        }
    ]
    async with running_intake(
        fresh_dsn,
        infra.kafka_bootstrap,
        api_keys=json.loads(json.dumps(keys)),
        search_index_key="intake-test-search-index-key-topics-0123",
        run_workers=True,
        outbox_poll_seconds=0.2,
    ) as running:
        await running.create_form("shop")
        yield running


async def _events_of(bootstrap: str, topic: str, lead_id: str, count: int) -> list[EventData]:
    """The lead's events on the topic, from the bytes Kafka holds (every partition, from the
    start), once `count` of them are there."""
    # No group: every partition of the topic is read, from the start.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[EventData] = []
    try:
        deadline = time.monotonic() + 20
        while len(found) < count:
            assert time.monotonic() < deadline, f"found {len(found)} of {count} on {topic}"
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    envelope = decode(record.key, record.value, list(record.headers))
                    if envelope.subject == lead_id:
                        found.append(parse_event(envelope.type, envelope.data))
    finally:
        await consumer.stop()
    return found


async def _submit(intake: Intake, **fields: Any) -> str:
    response = await intake.client.post("/v1/forms/shop/submissions", json=fields)
    assert response.status_code == 202, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def test_a_correction_reaches_the_topic_sealed(intake: Intake, infra: Stack) -> None:
    lead_id = await _submit(intake, email="topic.person@example.com", first_name="Tova")

    answer = await intake.client.patch(
        f"/v1/leads/{lead_id}",
        json={
            "last_name": "Ek",
            "first_name": "Tove",
            "consent": {"granted": ["news"], "withdrawn": ["marketing"]},
        },
        headers=ANA,
    )

    assert answer.status_code == 200, answer.text
    captured, updated = await _events_of(infra.kafka_bootstrap, LEAD_EVENTS, lead_id, 2)
    assert captured.event_type == "funnel.lead.captured.v2"
    assert isinstance(updated, LeadUpdatedV2)
    assert updated.source == "manual"
    assert updated.consent is not None
    assert updated.consent.categories == ("news",)
    assert updated.consent_withdrawn == ("marketing",)
    key = await intake.val("SELECT data_key FROM subject_keys WHERE lead_id = $1::uuid", lead_id)
    opened = unseal(
        updated.personal_data, key=key, lead_id=updated.lead_id, event_type=updated.event_type
    )
    print("unsealed from the topic:", opened.email, opened.first_name, opened.last_name)
    assert (opened.email, opened.first_name, opened.last_name) == (
        "topic.person@example.com",
        "Tove",
        "Ek",
    )
    assert "topic.person@example.com" not in updated.model_dump_json()


async def test_an_offline_touch_reaches_the_topic_with_its_actor(
    intake: Intake, infra: Stack
) -> None:
    lead_id = await _submit(intake, email="topic.call@example.com")
    call = {
        "type": "call_logged",
        "occurred_at": "2026-03-01T10:00:00Z",
        "lead_id": lead_id,
        "actor": "mallory",
        "properties": {"outcome": "voicemail", "text": "call back Friday"},
    }

    logged = await intake.client.post("/v1/activities", json={"activities": [call]}, headers=ANA)

    assert logged.status_code == 202, logged.text
    [event] = await _events_of(infra.kafka_bootstrap, ACTIVITY_EVENTS, lead_id, 1)
    print("on the topic:", event.model_dump_json())
    assert event.model_dump()["actor"] == "ana"
    # The note's words travel sealed with the person's key, the outcome (a choice) in the
    # clear for the tracker's rules (decision 0054).
    assert event.model_dump()["properties"] == {"outcome": "voicemail", "text": "*"}
    assert "call back Friday" not in event.model_dump_json()
    key = await intake.val("SELECT data_key FROM subject_keys WHERE lead_id = $1::uuid", lead_id)
    assert event.personal_data is not None
    opened = unseal(
        event.personal_data, key=key, lead_id=event.lead_id, event_type=event.event_type
    )
    assert opened.properties == {"outcome": "voicemail", "text": "call back Friday"}

    # The team reads the words where the key is: lead-intake's notes of the person.
    notes = await intake.client.get(f"/v1/leads/{lead_id}/notes", headers=ANA)
    assert notes.status_code == 200, notes.text
    [note] = notes.json()["items"]
    assert (note["activity_type"], note["outcome"], note["text"], note["actor"]) == (
        "call_logged",
        "voicemail",
        "call back Friday",
        "ana",
    )
    unknown = await intake.client.get(f"/v1/leads/{uuid4()}/notes", headers=ANA)
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["field"] == "lead_id"
