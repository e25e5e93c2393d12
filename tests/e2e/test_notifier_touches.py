"""The notifier as a process in the whole stack: a playbook saved through its API fires on a
real form post, the email arrives at the mailbox with a tracked link, following the link
redirects and emits funnel.touch.clicked; the touches list explains every touch."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from funnel_contracts import decode
from funnel_contracts.topics import TOUCH_EVENTS
from funnel_devstack.mailbox import read_messages
from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.e2e

PLAYBOOK = """
name: e2e-guide
trigger: {type: stage_entered, position: 0}
kind: transactional
templates:
  en:
    subject: "Your guide, {{ first_name or 'friend' }}"
    text: "Here it is: {{ tracked('https://guides.example/start') }}"
    html: "<p><a href=\\"{{ tracked('https://guides.example/start') }}\\">Your guide</a></p>"
"""


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("notifier-e2e")
    try:
        yield stack
    finally:
        stop_stack(stack, "notifier-e2e")


async def _touch_events(stack: Stack, lead_id: str, want: set[str]) -> set[str]:
    consumer = AIOKafkaConsumer(
        TOUCH_EVENTS,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not want <= seen:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    envelope = decode(r.key, r.value, list(r.headers))
                    if envelope.subject == lead_id:
                        seen.add(envelope.type)
    finally:
        await consumer.stop()
    return seen


async def test_a_saved_playbook_fires_on_a_form_post_and_its_link_is_tracked(
    stack: Stack,
) -> None:
    client = StackClient(stack)
    notifier = stack.url("notifier")
    async with httpx.AsyncClient(base_url=notifier, headers=client.auth, timeout=30) as api:
        saved = await api.put(
            "/v1/playbooks/e2e-guide",
            content=PLAYBOOK,
            headers={"content-type": "application/yaml"},
        )
        assert saved.status_code == 200, saved.text
        response = await client.post_form({"email": "guide@example.com", "first_name": "Gus"})
        assert response.status_code == 202, response.text
        lead_id = response.json()["lead_id"]

        def mine() -> list[object]:
            return [m for m in read_messages(stack.mail_dir) if str(m["To"]) == "guide@example.com"]

        async def count() -> int:
            return len(mine())

        await eventually(count, lambda n: n >= 2)
        assert await settled(count) == 2  # the welcome and the guide, once each
        guide = next(m for m in mine() if str(m["Subject"]) == "Your guide, Gus")  # type: ignore[index]
        html = guide.get_body(("html",)).get_content()  # type: ignore[attr-defined]
        link = re.search(r'href="([^"]+/t/c/[^"]+)"', html)
        assert link is not None
        path = link.group(1).split("/t/c/", 1)[1]
        hop = await api.get(f"/t/c/{path}", headers={"Authorization": ""})
        assert hop.status_code == 302
        assert hop.headers["location"] == "https://guides.example/start"

        touches = (await api.get(f"/v1/leads/{lead_id}/touches")).json()["touches"]
        by_playbook = {t["playbook"]: t for t in touches}
        assert {by_playbook[p]["status"] for p in ("welcome", "e2e-guide")} == {"sent"}
        assert guide["Message-ID"] == by_playbook["e2e-guide"]["message_id"]  # type: ignore[index]
        assert (await api.delete("/v1/playbooks/e2e-guide")).status_code == 204

    seen = await _touch_events(stack, lead_id, {"funnel.touch.sent.v1", "funnel.touch.clicked.v1"})
    assert {"funnel.touch.sent.v1", "funnel.touch.clicked.v1"} <= seen
