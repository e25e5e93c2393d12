"""kill -9 the stage-tracker while events flow, start it again: the counts stay exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from funnel_devstack.demo import demo_payloads, unique_people
from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("fault")
    try:
        yield stack
    finally:
        stop_stack(stack, "fault")


async def test_kill_9_stage_tracker_mid_stream_loses_and_doubles_nothing(stack: Stack) -> None:
    client = StackClient(stack)
    payloads = demo_payloads(400, seed=23, repeat_share=0.1)
    people = unique_people(payloads)

    async def post_steadily() -> list[int]:
        statuses: list[int] = []
        for start in range(0, len(payloads), 20):
            statuses += await client.post_many(payloads[start : start + 20])
            await asyncio.sleep(0.05)
        return statuses

    posting = asyncio.create_task(post_steadily())
    # Kill once the tracker is demonstrably in the middle of the stream.
    await eventually(
        lambda: client.sql("SELECT count(*) FROM tracker.lead_stages"),
        lambda n: n >= 60,
        interval=0.02,
    )
    stack.kill_service("stage-tracker")
    killed_at = await client.sql("SELECT count(*) FROM tracker.lead_stages")
    await asyncio.sleep(1)  # events keep arriving while it is down
    stack.start_service("stage-tracker")
    await stack.wait_service_ready("stage-tracker")
    statuses = await posting

    assert statuses == [202] * len(payloads)
    assert killed_at < people  # the kill really happened mid-stream
    snapshot = await eventually(client.snapshot, lambda s: s["total"] >= people, timeout=90)
    assert snapshot["total"] == people
    assert await client.sql("SELECT count(*) FROM tracker.lead_stages") == people
    assert await client.sql("SELECT count(*) FROM tracker.transitions") == people
    await eventually(client.mail_count, lambda n: n >= people, timeout=90)
    assert await settled(client.mail_count) == people
    assert set(client.mail_recipients().values()) == {1}
    assert await client.sql("SELECT count(*) FROM reporting.lead_current_stage") == people
