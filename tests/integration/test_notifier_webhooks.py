"""Signed webhooks and sales tasks against a real HTTP receiver on 127.0.0.1 (loopback is
allowed only by the setting): signature, Idempotency-Key, Retry-After, 4xx, failure, replay."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from funnel_contracts import ActivityRecorded, LeadScored
from funnel_devstack.stack import Stack
from notifier.channels.webhook_rules import verify
from notifier.playbooks import store as playbook_store
from notifier.playbooks.models import Playbook
from tests.integration.notifier_harness import (
    Harness,
    WebhookReceiver,
    captured,
    notifier_harness,
    running_receiver,
)

pytestmark = pytest.mark.integration
SECRET = "webhook-secret-for-the-integration-tests"


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as server:
        yield server


def _settings(receiver: WebhookReceiver, **extra: Any) -> dict[str, Any]:
    return {
        "webhook_allowed_hosts": ["127.0.0.1"],
        "webhook_allow_private_addresses": True,
        "webhook_signing_secret": SECRET,
        "sales_task_webhook_url": receiver.url,
        **extra,
    }


async def _demo_requested(h: Harness, receiver: WebhookReceiver) -> UUID:
    """Save a webhook playbook on demo requests, and make a lead request a demo."""
    book = {
        "trigger": {"type": "activity", "activity_types": ["demo_requested"]},
        "channel": "webhook",
        "kind": "transactional",
        "webhook": {"url": receiver.url},
    }
    async with h.api() as api:
        saved = await api.put("/v1/playbooks/crm-demo", json=book)
        assert saved.status_code == 200, (saved.status_code, saved.text)
    lead = uuid4()
    now = datetime.now(UTC)
    await h.feed(
        captured(lead),
        ActivityRecorded(
            lead_id=lead, activity_id=uuid4(), activity_type="demo_requested",
            occurred_at=now, recorded_at=now,
        ),
    )  # fmt: skip
    return lead


def _touch(touches: list[dict[str, Any]], playbook: str) -> dict[str, Any]:
    [touch] = [t for t in touches if t["playbook"] == playbook]
    return touch


async def test_a_webhook_is_signed_and_retried_after_what_retry_after_asks(
    fresh_dsn: str, infra: Stack, receiver: WebhookReceiver
) -> None:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(receiver)) as h:
        lead = await _demo_requested(h, receiver)
        receiver.script = [(503, {"Retry-After": "30"}), (200, {})]
        before = datetime.now(UTC)
        await h.send_due()
        touch = _touch(await h.touches(lead), "crm-demo")
        assert (touch["status"], touch["reason"], touch["attempts"]) == ("scheduled", "retrying", 1)
        assert touch["due_at"] >= before + timedelta(seconds=30)  # not sooner than asked
        await h.make_due(lead)
        await h.send_due()
        touch = _touch(await h.touches(lead), "crm-demo")
        assert (touch["status"], touch["attempts"]) == ("sent", 2)
    assert len(receiver.received) == 2
    for request in receiver.received:
        assert request.headers["idempotency-key"] == str(touch["id"])
        timestamp = int(request.headers["x-funnel-timestamp"])
        assert verify(SECRET, timestamp, request.body, request.headers["x-funnel-signature"])
        body = json.loads(request.body)
        assert (body["touch_id"], body["lead_id"]) == (str(touch["id"]), str(lead))
    assert not verify(
        "another-secret", timestamp, request.body, request.headers["x-funnel-signature"]
    )


async def test_a_4xx_fails_the_touch_at_once_and_it_can_be_replayed(
    fresh_dsn: str, infra: Stack, receiver: WebhookReceiver
) -> None:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(receiver)) as h:
        lead = await _demo_requested(h, receiver)
        receiver.script = [(400, {})]
        await h.send_due()
        touch = _touch(await h.touches(lead), "crm-demo")
        assert (touch["status"], touch["last_error"]) == ("failed", "webhook answered 400")
        [failed] = await h.emitted("funnel.touch.failed.v1")
        assert (failed["touch_id"], failed["attempts"], failed["channel"]) == (
            str(touch["id"]),
            1,
            "webhook",
        )
        async with h.api() as api:
            replayed = await api.post(f"/v1/touches/{touch['id']}/replay")
            assert replayed.status_code == 202
            assert (await api.post(f"/v1/touches/{touch['id']}/replay")).status_code == 409
            assert (await api.post(f"/v1/touches/{uuid4()}/replay")).status_code == 404
        await h.send_due()
        assert _touch(await h.touches(lead), "crm-demo")["status"] == "sent"
    assert [r.headers["idempotency-key"] for r in receiver.received] == [str(touch["id"])] * 2


async def test_after_the_last_try_the_touch_is_failed_and_emitted(
    fresh_dsn: str, infra: Stack, receiver: WebhookReceiver
) -> None:
    settings = _settings(receiver, touch_max_attempts=3)
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **settings) as h:
        lead = await _demo_requested(h, receiver)
        receiver.script = [(500, {})] * 5
        for _ in range(5):
            await h.make_due(lead)
            await h.send_due()
        touch = _touch(await h.touches(lead), "crm-demo")
        assert (touch["status"], touch["attempts"]) == ("failed", 3)
        [failed] = await h.emitted("funnel.touch.failed.v1")
        assert failed["attempts"] == 3
    assert len(receiver.received) == 3


async def test_loopback_destinations_are_refused_unless_configured(
    fresh_dsn: str, infra: Stack, receiver: WebhookReceiver
) -> None:
    settings = _settings(receiver, webhook_allow_private_addresses=False)
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **settings) as h:
        with pytest.raises(AssertionError, match="422"):  # refused when saved
            await _demo_requested(h, receiver)
        # Saved while the name resolved to a public address, re-pointed since: each send
        # checks again.
        book = {"name": "crm-demo", "trigger": {"type": "activity",
                "activity_types": ["demo_requested"]}, "channel": "webhook",
                "kind": "transactional", "webhook": {"url": receiver.url}}  # fmt: skip
        async with h.pool.acquire() as conn:
            await playbook_store.save(conn, Playbook.model_validate(book), "test")
        lead = uuid4()
        now = datetime.now(UTC)
        await h.feed(
            captured(lead),
            ActivityRecorded(
                lead_id=lead, activity_id=uuid4(), activity_type="demo_requested",
                occurred_at=now, recorded_at=now,
            ),
        )  # fmt: skip
        await h.send_due()
        touch = _touch(await h.touches(lead), "crm-demo")
        assert touch["status"] == "failed"
        assert "127.0.0.1 is not a public address" in touch["last_error"]
    assert receiver.received == []


async def test_a_hot_lead_becomes_a_sales_task_listed_and_pushed(
    fresh_dsn: str, infra: Stack, receiver: WebhookReceiver
) -> None:
    def scored(temperature: str, previous: str | None) -> LeadScored:
        return LeadScored(
            lead_id=lead, funnel_id="digital-sales", score=72.5, fit_score=40,
            engagement_score=32.5, temperature=temperature, previous_temperature=previous,
            scored_at=datetime.now(UTC),
        )  # fmt: skip

    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(receiver)) as h:
        lead = uuid4()
        # A second hot score, even one that does not say it was hot before, makes no new task.
        await h.feed(
            captured(lead), scored("hot", "warm"), scored("hot", "hot"), scored("hot", None)
        )
        await h.send_due()
        touch = _touch(await h.touches(lead), "hot-lead-call")
        assert (touch["status"], touch["channel"]) == ("sent", "task")
        async with h.api() as api:
            tasks = (await api.get("/v1/tasks", params={"status": "open"})).json()["tasks"]
            bad = await api.get("/v1/tasks", params={"status": "maybe"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "status"
        [task] = [t for t in tasks if t["lead_id"] == str(lead)]
        assert (task["title"], task["score"], task["temperature"]) == (
            "Hot lead: call now",
            72.5,
            "hot",
        )
        [sent] = await h.emitted("funnel.touch.sent.v1")
        assert (sent["channel"], sent["playbook"]) == ("task", "hot-lead-call")
    [pushed] = receiver.received
    assert pushed.headers["idempotency-key"] == task["id"]
    body = json.loads(pushed.body)
    assert body["task"]["title"] == "Hot lead: call now"
    assert body["contact"]["email"] == f"{lead.hex[:10]}@example.com"
