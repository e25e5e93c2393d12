"""kill -9 the notifier after it handed part of a batch to SMTP and before it recorded it.

The SMTP server here is in the test process: on the Nth message it stores the message, then
SIGKILLs the notifier before answering, so the notifier dies exactly in the window between
the hand-off and the record. After a restart, every touch is recorded as sent exactly once
and emitted once; at the SMTP server each Message-ID arrives, and the only repeats are the
messages of the killed batch, which carry the same Message-ID (the receiver's dedup key).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiosmtpd.controller import Controller

from funnel_contracts import Consent, Envelope, LeadCaptured, StageChanged, decode
from funnel_contracts.topics import TOUCH_EVENTS
from funnel_devstack.ports import free_port
from funnel_devstack.stack import SERVICE_ROLES, Stack
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from notifier.app import MIGRATIONS
from notifier.touches.consumer import handle

pytestmark = pytest.mark.fault

LEADS = 200
BATCH = 25
KILL_AT = 60  # the 60th message: in the middle of the third batch


class KillingMailbox:
    """Accepts mail; on message number `kill_at` stores it, then kills `victim` (once)."""

    def __init__(self, kill_at: int) -> None:
        self.kill_at = kill_at
        self.messages: list[str] = []  # Message-IDs in arrival order
        self.victim: int | None = None
        self.killed = threading.Event()
        self.received_before_kill: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        header = next(
            line for line in raw.split(b"\r\n") if line.lower().startswith(b"message-id:")
        )
        with self._lock:
            self.messages.append(header.split(b":", 1)[1].strip().decode())
            if len(self.messages) == self.kill_at and self.victim and not self.killed.is_set():
                os.kill(self.victim, signal.SIGKILL)  # before the 250: nothing gets recorded
                self.received_before_kill = list(self.messages)
                self.killed.set()
        return "250 OK"


async def _seed(dsn: str) -> list[str]:
    """Migrations (and the notifier's own role's grants, as `migrate` gives them), then LEADS
    leads with a due welcome each (as the consumer records them)."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, "notifier", MIGRATIONS)
        await migrations.grant_runtime(conn, "notifier", SERVICE_ROLES["notifier"])
    finally:
        await conn.close()
    pool = await create_pool(dsn, "notifier", min_size=1, max_size=4)
    now = datetime.now(UTC)
    leads = []
    try:
        for _ in range(LEADS):
            lead = uuid4()
            leads.append(str(lead))
            events = (
                LeadCaptured(
                    lead_id=lead, submission_id=uuid4(), form_id="demo", funnel_id="digital-sales",
                    email=f"{lead.hex[:12]}@example.com", captured_at=now,
                    consent=Consent(text="ok", categories=("marketing",), given_at=now),
                ),
                StageChanged(
                    lead_id=lead, funnel_id="digital-sales", funnel_version=1, from_stage=None,
                    to_stage="awareness", to_stage_position=0, reason="form", changed_at=now,
                ),
            )  # fmt: skip
            for event in events:
                async with pool.acquire() as c, c.transaction():
                    await handle(c, Envelope.of(event, source="test"), event)
    finally:
        await pool.close()
    return leads


async def _eventually(probe: Any, done: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    result = await probe()
    while not done(result) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        result = await probe()
    return result


async def _touch_sent_ids(bootstrap: str, expected: int) -> Counter[str]:
    """touch.sent events on the topic: event ids per touch (a relay repeat has the same id)."""
    consumer = AIOKafkaConsumer(
        TOUCH_EVENTS, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    ids: dict[str, set[str]] = {}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    envelope = decode(r.key, r.value, list(r.headers))
                    if envelope.type == "funnel.touch.sent.v1":
                        ids.setdefault(envelope.data["touch_id"], set()).add(envelope.id)
            if len(ids) >= expected:
                break
    finally:
        await consumer.stop()
    return Counter({touch: len(events) for touch, events in ids.items()})


async def test_kill_9_between_smtp_hand_off_and_record_sends_each_touch_once_per_key(
    module_infra: Stack,
) -> None:
    stack = module_infra
    dsn = stack.postgres.dsn
    await _seed(dsn)
    mailbox = KillingMailbox(KILL_AT)
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    stack.extra_env.update(
        {
            "FUNNEL_SMTP_PORT": str(smtp_port),
            "FUNNEL_SEND_BATCH_SIZE": str(BATCH),
            "FUNNEL_TOUCH_LEASE_SECONDS": "3",
            "FUNNEL_OUTBOX_POLL_SECONDS": "0.5",
        }
    )
    conn = await asyncpg.connect(dsn)
    try:
        stack.start_service("notifier")
        mailbox.victim = stack.services["notifier"].pid
        await asyncio.to_thread(mailbox.killed.wait, 90)
        assert mailbox.killed.is_set(), "the notifier never reached the kill point"
        stack.kill_service("notifier")  # reap the killed process

        status = "SELECT status, count(*) FROM notifier.touches GROUP BY status"
        at_kill = dict(await conn.fetch(status))
        recorded = {
            r["message_id"]
            for r in await conn.fetch(
                "SELECT message_id FROM notifier.touches WHERE status = 'sent'"
            )
        }
        handed_not_recorded = set(mailbox.received_before_kill) - recorded
        assert handed_not_recorded, "the kill did not fall between hand-off and record"
        assert at_kill.get("sending", 0) >= len(handed_not_recorded)
        assert at_kill["sent"] < LEADS  # it really died mid-stream

        stack.start_service("notifier")
        await stack.wait_service_ready("notifier")
        sent = await _eventually(
            lambda: conn.fetchval("SELECT count(*) FROM notifier.touches WHERE status = 'sent'"),
            lambda n: n >= LEADS,
        )
        assert sent == LEADS
        assert await conn.fetchval("SELECT count(*) FROM notifier.touches") == LEADS

        by_id = Counter(mailbox.messages)
        touch_ids = {
            f"<touch-{r['id']}@funnel.example>"
            for r in await conn.fetch("SELECT id FROM notifier.touches")
        }
        assert set(by_id) == touch_ids  # every touch reached the server, under its own key
        repeated = {mid for mid, n in by_id.items() if n > 1}
        # The only repeats: messages handed over in the killed batch, never recorded, once more.
        assert repeated == handed_not_recorded
        assert all(by_id[mid] == 2 for mid in repeated)
        assert len(repeated) <= BATCH

        events = await _touch_sent_ids(stack.kafka_bootstrap, LEADS)
        assert len(events) == LEADS
        assert set(events.values()) == {1}  # recorded (and emitted) once per touch
    finally:
        stack.stop_service("notifier")
        controller.stop()
        await conn.close()
