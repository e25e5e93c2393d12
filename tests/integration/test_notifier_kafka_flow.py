"""The notifier as it runs: its consumer on the contract topics of a private Kafka, its
sender, its outbox relay. One trace goes from the published event to the touch.sent record."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from funnel_contracts import Envelope, decode, encode
from funnel_contracts.topics import LEAD_EVENTS, STAGE_EVENTS, TOUCH_EVENTS
from funnel_devstack.stack import Stack
from tests.integration.notifier_harness import captured, entered, notifier_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def dsn(module_infra: Stack) -> str:
    return await module_infra.postgres.create_database("n")


async def test_events_from_kafka_become_one_email_and_one_touch_sent_in_the_same_trace(
    module_infra: Stack, dsn: str
) -> None:
    bootstrap = module_infra.kafka_bootstrap
    async with notifier_harness(dsn, bootstrap, outbox_poll_seconds=0.5) as h:
        from notifier.app import create_app

        app = create_app(h.settings)
        lead = uuid4()
        trace_id = uuid4().hex
        traceparent = f"00-{trace_id}-{uuid4().hex[:16]}-01"
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for event in (captured(lead), entered(lead, "awareness", 0)):
                envelope = Envelope.of(event, source="test")
                envelope = Envelope(**{**envelope.__dict__, "trace": {"traceparent": traceparent}})
                record = encode(envelope)
                await producer.send_and_wait(
                    event.topic, record.value, key=record.key, headers=record.headers
                )
                # Re-delivery of the same event (same id) changes nothing.
                await producer.send_and_wait(
                    event.topic, record.value, key=record.key, headers=record.headers
                )
        finally:
            await producer.stop()
        assert {captured(lead).topic, entered(lead, "awareness", 0).topic} == {
            LEAD_EVENTS,
            STAGE_EVENTS,
        }
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not h.mail_to(f"{lead.hex[:10]}@example.com"):
                await asyncio.sleep(0.1)
            sent = await _touch_events(bootstrap, lead, deadline=time.monotonic() + 30)
        [mail] = h.mail_to(f"{lead.hex[:10]}@example.com")
        [touch] = await h.touches(lead)
        assert touch["status"] == "sent"
        assert touch["trace_context"]["traceparent"].split("-")[1] == trace_id
        [record] = sent
        assert record.type == "funnel.touch.sent.v1"
        assert record.data["message_id"] == mail["Message-ID"]
        assert record.trace["traceparent"].split("-")[1] == trace_id  # one trace, end to end


async def _touch_events(bootstrap: str, lead: object, *, deadline: float) -> list[Envelope]:
    consumer = AIOKafkaConsumer(
        TOUCH_EVENTS, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        while time.monotonic() < deadline and not found:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    envelope = decode(r.key, r.value, list(r.headers))
                    if envelope.subject == str(lead):
                        found.append(envelope)
        await asyncio.sleep(1.0)  # anything more (a duplicate) would arrive now
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for r in records:
                envelope = decode(r.key, r.value, list(r.headers))
                if envelope.subject == str(lead):
                    found.append(envelope)
    finally:
        await consumer.stop()
    return found
