"""A database outage between the SMTP server's 250 and the record: the sender keeps the
answers and records them when the database answers again, so nothing goes out twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg
import pytest

from funnel_devstack.stack import Stack
from funnel_servicekit.unit_of_work import UnitOfWork
from notifier.channels import Outcome
from notifier.touches.worker import CONNECTION_ERRORS, Leased, TouchSender
from tests.integration.notifier_harness import Harness, captured, entered, notifier_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap) as harness:
        yield harness


class OutageWhileRecording(TouchSender):
    """The real sender, whose record transactions lose their connection `outages` times:
    another session terminates the backend (pg_terminate_backend, as an administrator or a
    failover does) right before the first write, so asyncpg raises what it raises then."""

    def __init__(self, h: Harness, outages: int) -> None:
        super().__init__(h.pool, h.settings)
        self.outages = outages
        self.terminated = 0
        self.dsn = h.settings.database_url

    async def _record_batch(
        self,
        uow: UnitOfWork,
        leased: list[Leased],
        outcomes: Mapping[UUID, Outcome],
        now: datetime,
    ) -> None:
        if self.terminated < self.outages:
            admin = await asyncpg.connect(self.dsn)
            try:  # waits until the backend is gone
                gone = await admin.fetchval(
                    "SELECT pg_terminate_backend($1, 5000)", uow.conn.get_server_pid()
                )
            finally:
                await admin.close()
            assert gone is True
            self.terminated += 1
        await super()._record_batch(uow, leased, outcomes, now)


async def _due_welcome(h: Harness) -> str:
    lead = uuid4()
    email = f"{lead.hex[:10]}@example.com"
    await h.feed(captured(lead, email=email), entered(lead, "awareness", 0))
    return email


async def _expire_leases(h: Harness) -> int:
    """Time passes beyond the lease: a touch still 'sending' would be handed over again."""
    done = await h.pool.execute(
        "UPDATE touches SET lease_until = now() - interval '1 second' WHERE status = 'sending'"
    )
    return int(done.split()[-1])


async def test_answers_are_recorded_after_the_connection_is_lost_and_sent_once(
    h: Harness,
) -> None:
    email = await _due_welcome(h)
    sender = OutageWhileRecording(h, outages=3)

    assert await sender.send_due() == 1

    assert sender.terminated == 3  # three record transactions died, the fourth committed
    [touch] = await h.touches(await h.pool.fetchval("SELECT lead_id FROM touches"))
    assert (touch["status"], touch["attempts"]) == ("sent", 1)
    assert touch["message_id"] == _message_id(touch)
    [sent] = await h.emitted("funnel.touch.sent.v1")
    assert sent["touch_id"] == str(touch["id"])
    # Nothing is left leased to go out again after its lease, and nothing does.
    assert await _expire_leases(h) == 0
    assert await h.send_due() == 0
    [mail] = h.mail_to(email)
    assert mail["Message-ID"] == touch["message_id"]
    assert len(h.mailbox.messages()) == 1


async def test_a_stop_ends_the_retries_and_the_lease_rule_applies(h: Harness) -> None:
    email = await _due_welcome(h)
    sender = OutageWhileRecording(h, outages=1_000_000)  # the database stays "down"
    batch = asyncio.create_task(sender.send_due())
    async with asyncio.timeout(30):
        while sender.terminated < 2:  # it is retrying
            await asyncio.sleep(0.05)
    sender.stop()
    async with asyncio.timeout(10):  # the wait between tries ends at once
        with contextlib.suppress(*CONNECTION_ERRORS):
            await batch
    assert batch.done()
    [touch] = await h.touches(await h.pool.fetchval("SELECT lead_id FROM touches"))
    assert (touch["status"], touch["attempts"]) == ("sending", 1)  # leased, not recorded
    assert await h.emitted("funnel.touch.sent.v1") == []
    assert len(h.mail_to(email)) == 1
    # The lease rule of decision 0007: after the lease, the touch goes again under the same
    # Message-ID and is recorded once.
    assert await _expire_leases(h) == 1
    assert await h.send_due() == 1
    [after] = await h.touches(touch["lead_id"])
    assert (after["status"], after["attempts"]) == ("sent", 2)
    mails = h.mail_to(email)
    assert [m["Message-ID"] for m in mails] == [_message_id(after)] * 2
    assert len(await h.emitted("funnel.touch.sent.v1")) == 1


def _message_id(touch: dict[str, object]) -> str:
    return f"<touch-{touch['id']}@funnel.example>"
