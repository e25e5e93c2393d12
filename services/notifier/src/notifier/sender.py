"""The touch sender: claims due touches, sends them, records touch.sent in the outbox.

A touch is leased (status 'sending') in its own transaction before the SMTP call and marked
sent with its touch.sent event after it, so a crashed sender's touch is retried only after
its lease expires, with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime

import aiosmtplib
import asyncpg

from funnel_contracts import TouchSent
from funnel_servicekit.outbox import enqueue
from funnel_servicekit.runtime import ServiceRuntime, Worker
from notifier import store
from notifier.email_message import message_id, welcome_email
from notifier.settings import NotifierSettings

log = logging.getLogger(__name__)


class TouchSender:
    def __init__(self, pool: asyncpg.Pool, settings: NotifierSettings) -> None:
        self.pool = pool
        self.settings = settings
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        listener = await self.pool.acquire()

        def wake(*_: object) -> None:
            self._wake.set()

        await listener.add_listener("notifier_touches", wake)
        try:
            while not self._stopping.is_set():
                try:
                    sent = await self.send_due()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.exception("touch sender failed; retrying")
                    sent = 0
                    await asyncio.sleep(1.0)
                if sent:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.scheduler_poll_seconds)
                self._wake.clear()
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener("notifier_touches", wake)
            await self.pool.release(listener)

    async def send_due(self, limit: int = 20) -> int:
        async with self.pool.acquire() as conn:
            touches = await store.claim_due(conn, limit, self.settings.touch_lease_seconds)
        for touch in touches:
            await self._send(touch)
        return len(touches)

    async def _send(self, touch: store.DueTouch) -> None:
        domain = self.settings.message_id_domain
        msg = welcome_email(
            touch_id=touch.id,
            to=touch.email,
            first_name=touch.first_name,
            mail_from=self.settings.mail_from,
            domain=domain,
        )
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                timeout=self.settings.smtp_timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            give_up = touch.attempts >= self.settings.touch_max_attempts
            delay = min(2**touch.attempts, 300) * (0.5 + random.random())  # noqa: S311
            async with self.pool.acquire() as conn:
                await store.mark_retry(conn, touch.id, repr(exc), delay_s=delay, give_up=give_up)
            log.warning(
                "touch send failed", extra={"touch_id": str(touch.id), "attempt": touch.attempts}
            )
            return
        mid = message_id(touch.id, domain)
        async with self.pool.acquire() as conn, conn.transaction():
            if await store.mark_sent(conn, touch.id, mid):
                await enqueue(
                    conn,
                    self.settings.db_schema,
                    TouchSent(
                        lead_id=touch.lead_id,
                        touch_id=touch.id,
                        playbook=touch.playbook,
                        channel="email",
                        template=touch.template,
                        funnel_id=touch.funnel_id,
                        stage=touch.stage,
                        message_id=mid,
                        sent_at=datetime.now(UTC),
                    ),
                    source=self.settings.service_name,
                )


def sender_worker(runtime: ServiceRuntime) -> Worker:
    settings = runtime.settings
    assert isinstance(settings, NotifierSettings)
    sender = TouchSender(runtime.pool, settings)
    return Worker("touch-sender", sender.run, sender.stop)
