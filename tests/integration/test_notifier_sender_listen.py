"""The touch sender is woken by NOTIFY, and listens again after its LISTEN connection drops
(a database restart, a terminated backend): it does not fall back to polling for good."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from funnel_devstack.stack import Stack
from notifier.wake import TOUCHES_CHANNEL as WAKE_CHANNEL
from tests.integration.kit_support import eventually
from tests.integration.notifier_harness import Harness, captured, entered, notifier_harness

pytestmark = pytest.mark.integration
POLL_SECONDS = 120.0  # far longer than the test waits: only NOTIFY can wake the sender


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    async with notifier_harness(
        fresh_dsn, infra.kafka_bootstrap, scheduler_poll_seconds=POLL_SECONDS
    ) as harness:
        yield harness


async def _listeners(h: Harness) -> list[int]:
    rows = await h.pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND query IN ($1, $2) AND pid <> pg_backend_pid() ORDER BY pid",
        f"LISTEN {WAKE_CHANNEL}",
        f'LISTEN "{WAKE_CHANNEL}"',  # asyncpg quotes the channel
    )
    return [r["pid"] for r in rows]


async def test_the_sender_listens_again_after_its_connection_is_cut(h: Harness) -> None:
    sender = h.sender
    task = asyncio.create_task(sender.run())
    try:
        [first] = await eventually(lambda: _listeners(h), bool, what="the sender's LISTEN")
        await h.pool.execute("SELECT pg_terminate_backend($1)", first)
        await eventually(
            lambda: _new_listener(h, first), bool, what="a new LISTEN after the old one was cut"
        )

        lead = uuid4()
        await h.feed(captured(lead, email="woken@example.com"), entered(lead, "awareness", 0))
        # The welcome is due now; with polling every 120 s only the NOTIFY on the new
        # connection can have the sender deliver it within the wait.
        await eventually(
            lambda: _mails(h, "woken@example.com"), bool, what="the welcome, woken by NOTIFY"
        )
        sent = {"welcome": ("sent", None)}
        await eventually(lambda: h.status(lead), lambda got: got == sent, what="recorded sent")
    finally:
        sender.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 15)
    assert task.done()
    assert task.exception() is None
    assert await _listeners(h) == []  # the run closed its LISTEN connection


async def _new_listener(h: Harness, old: int) -> list[int]:
    pids = await _listeners(h)
    return [p for p in pids if p != old]


async def _mails(h: Harness, address: str) -> int:
    return len(h.mail_to(address))
