"""Email over SMTP: one connection kept across batches, each message with its touch's
Message-ID. A connection idle for long (servers close those) is replaced before use.

A `WireEmail` goes as its bytes to its one recipient (`sendmail`: nothing parsed or
flattened again); an `EmailMessage` (an address the touch's builder does not write itself)
goes through `send_message`, which reads the addresses from its headers."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from email.message import EmailMessage
from uuid import UUID

import aiosmtplib

from notifier.channels import Failed, Outcome, Retry, Sent, WireEmail

REUSE_IDLE_SECONDS = 20.0
# Servers often echo the recipient ("550 <ada@example.com>: unknown user"); the reply becomes
# the touch's last_error and funnel.touch.failed.v1, which must not carry an address.
_ADDRESS = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")


def without_addresses(reply: str) -> str:
    """An SMTP reply with every email address replaced by `<address>`."""
    return _ADDRESS.sub("<address>", reply)


class SmtpChannel:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()

    async def _connection(self) -> aiosmtplib.SMTP:
        fresh = time.monotonic() - self._last_used < REUSE_IDLE_SECONDS
        if self._smtp is not None and self._smtp.is_connected and fresh:
            return self._smtp
        await self.close()
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=self.timeout)
        await smtp.connect()
        self._smtp = smtp
        return smtp

    async def send_batch(
        self, messages: Sequence[tuple[UUID, WireEmail | EmailMessage]]
    ) -> dict[UUID, Outcome]:
        """Hand each message to the server; an outage leaves the rest for a later try."""
        outcomes: dict[UUID, Outcome] = {}
        if not messages:
            return outcomes
        try:
            smtp = await self._connection()
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            error = f"SMTP server unreachable: {type(exc).__name__}"
            return {touch_id: Retry(error, counted=False) for touch_id, _ in messages}
        for touch_id, msg in messages:
            outcomes[touch_id] = await self._send_one(smtp, msg)
            if isinstance(outcomes[touch_id], Retry) and not smtp.is_connected:
                lost = outcomes[touch_id]
                for rest, _ in messages:
                    outcomes.setdefault(rest, lost)
                await self.close()
                break
        self._last_used = time.monotonic()
        return outcomes

    async def _send_one(self, smtp: aiosmtplib.SMTP, msg: WireEmail | EmailMessage) -> Outcome:
        try:
            if isinstance(msg, WireEmail):
                await smtp.sendmail(msg.sender, [msg.recipient], msg.data)
            else:
                await smtp.send_message(msg)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(500 <= c < 600 for c in codes):
                return Failed(f"recipient refused ({', '.join(map(str, codes))})")
            # A temporary refusal (greylisting, a full mailbox, a relay refusing for a while):
            # queued and tried again like an outage, not counted toward failure.
            return Retry(f"recipient deferred ({', '.join(map(str, codes))})", counted=False)
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                return Failed(f"SMTP {exc.code}: {without_addresses(exc.message)[:200]}")
            return Retry(f"SMTP {exc.code}: {without_addresses(exc.message)[:200]}", counted=False)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Retry(f"SMTP connection lost: {type(exc).__name__}", counted=False)
        if isinstance(msg, WireEmail):
            return Sent(message_id=msg.message_id)
        return Sent(message_id=str(msg["Message-ID"]))
