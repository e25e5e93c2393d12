"""Test leads on the whole stack: a submission an admin key marks `test` is stored and found
(`test: true`), gets no touch, and counts in no report; without an admin key the flag is
refused and nothing is stored. A real lead next to it goes through as ever."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("test-leads-e2e")
    try:
        yield stack
    finally:
        stop_stack(stack, "test-leads-e2e")


async def test_a_test_lead_is_stored_and_found_but_touched_and_counted_nowhere(
    stack: Stack,
) -> None:
    client = StackClient(stack)
    anonymous = await client.post_form({"email": "probe@test.example", "test": True})
    assert anonymous.status_code == 401, anonymous.text
    assert await client.sql("SELECT count(*) FROM intake.leads") == 0

    probe = await client.post_form(
        {"email": "probe@test.example", "test": True}, headers=client.auth
    )
    assert probe.status_code == 202, probe.text
    real = await client.post_form({"email": "real@example.com", "first_name": "Rita"})
    assert real.status_code == 202, real.text
    probe_id, real_id = probe.json()["lead_id"], real.json()["lead_id"]

    found = await client.get("lead-intake", f"/v1/leads/{probe_id}")
    assert found.status_code == 200, found.text
    assert found.json()["test"] is True
    assert (await client.get("lead-intake", f"/v1/leads/{real_id}")).json()["test"] is False

    # The real lead is welcomed and counted; the test lead neither.
    await eventually(client.mail_count, lambda n: n >= 1)
    total = await eventually(client.snapshot_total, lambda n: n >= 1)
    assert total == 1
    assert await settled(client.snapshot_total) == 1
    assert client.mail_recipients() == {"real@example.com": 1}
    async with httpx.AsyncClient(
        base_url=stack.url("notifier"), headers=client.auth, timeout=30
    ) as notifier:
        touches = (await notifier.get(f"/v1/leads/{probe_id}/touches")).json()["touches"]
    assert all(t["status"] == "cancelled" and t["reason"] == "test lead" for t in touches)
    # the tracker still knows where the test lead is (a person may look at it)
    journey = await client.get("stage-tracker", f"/v1/leads/{probe_id}/journey")
    assert journey.json()["current_stage"] == "awareness"
