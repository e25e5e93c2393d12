"""SIGTERM each service under load: it drains within the grace period; nothing lost or doubled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from funnel_devstack.demo import demo_payloads
from funnel_devstack.stack import SERVICES, Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.fault

GRACE_SECONDS = 25  # shorter than the Kubernetes grace period (60 s) the manifests give


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("sigterm")
    try:
        yield stack
    finally:
        stop_stack(stack, "sigterm")


async def test_sigterm_under_load_drains_every_service_and_loses_nothing(stack: Stack) -> None:
    client = StackClient(stack)
    payloads = demo_payloads(480, seed=31, repeat_share=0.1)
    accepted: list[str] = []

    async def post_steadily() -> None:
        async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=10) as c:
            for payload in payloads:
                for _ in range(300):  # intake restarting: retry like a site would, for up to 30 s
                    try:
                        r = await c.post("/v1/forms/demo/submissions", json=payload)
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                else:
                    pytest.fail("lead-intake did not come back within 30 s")
                if r.status_code == 202:
                    accepted.append(payload["email"].strip().lower())
                await asyncio.sleep(0.01)

    posting = asyncio.create_task(post_steadily())
    drained = {}
    for service in SERVICES:
        await eventually(lambda: asyncio.sleep(0, len(accepted)), lambda n: n >= 40, interval=0.05)
        accepted_before = len(accepted)
        drained[service] = await asyncio.to_thread(stack.stop_service, service, GRACE_SECONDS)
        stack.start_service(service)
        await stack.wait_service_ready(service)
        await eventually(
            lambda b=accepted_before: asyncio.sleep(0, len(accepted) - b),
            lambda n: n >= 40,
            interval=0.05,
            timeout=60,
        )
    await posting

    assert drained == {s: True for s in SERVICES}  # each exited on its own, no SIGKILL
    people = len(set(accepted))
    assert len(accepted) > 200  # the load really ran through the restarts
    snapshot = await eventually(client.snapshot, lambda s: s["total"] >= people, timeout=90)
    assert snapshot["total"] == people
    assert await client.sql("SELECT count(*) FROM intake.leads") == people
    assert await client.sql("SELECT count(*) FROM tracker.lead_stages") == people
    await eventually(client.mail_count, lambda n: n >= people, timeout=90)
    assert await settled(client.mail_count) == people
    assert set(client.mail_recipients()) == set(accepted)
    assert set(client.mail_recipients().values()) == {1}
