"""The SMTP channel's outcomes, against a real SMTP server (aiosmtpd on loopback), for the
bytes the sender builds (`WireEmail`, handed over with `sendmail`) and for the standard
library's message (`EmailMessage`, with `send_message`, the path an unusual address keeps):
the same `Sent` with the Message-ID, the same `Failed`/`Retry` for refusals at RCPT and at
DATA, the same addresses scrubbed from the server's replies (decision 0080)."""

from __future__ import annotations

import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiosmtpd.controller import Controller

from notifier.channels import Failed, Outcome, Retry, Sent, WireEmail
from notifier.channels.smtp import SmtpChannel
from notifier.playbooks.models.templates import RenderedEmail
from notifier.touches.models.email_message import MailEnvelope, build_email, wire_email

pytestmark = pytest.mark.integration

# What the server answers, by recipient local part: at RCPT, or at DATA.
AT_RCPT = {
    "gone": "550 5.1.1 <gone@example.com>: unknown user",
    "later": "451 4.3.2 try later, gone@example.com",
}
AT_DATA = {
    "spam": "554 5.7.1 message from hello@funnel.example to spam@example.com refused",
    "full": "452 4.2.2 mailbox of full@example.com is full",
}


class Server:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = AT_RCPT.get(address.split("@")[0])
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = AT_DATA.get(envelope.rcpt_tos[0].split("@")[0])
        if reply is not None:
            return reply
        raw = envelope.original_content
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), raw))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Server, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = Server()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield server, port
    finally:
        controller.stop()


def _messages(wire: bool) -> list[tuple[UUID, WireEmail | EmailMessage]]:
    out: list[tuple[UUID, WireEmail | EmailMessage]] = []
    for local in ("ok", "gone", "later", "spam", "full", "ok2"):
        touch = uuid4()
        envelope = MailEnvelope(
            touch, f"{local}@example.com", "Fünnel <hello@funnel.example>", "funnel.example", "sv"
        )
        rendered = RenderedEmail("Välkommen, Åsa!", "Hej Åsa\n", "<p>Hej Åsa</p>\n")
        built = wire_email(envelope, rendered) if wire else build_email(envelope, rendered)
        assert isinstance(built, WireEmail) is wire
        out.append((touch, built))
    return out


def _expected(touch_ids: list[UUID]) -> list[Outcome]:
    ok, ok2 = touch_ids[0], touch_ids[-1]
    return [
        Sent(message_id=f"<touch-{ok}@funnel.example>"),
        Failed("recipient refused (550)"),
        Retry("recipient deferred (451)", counted=False),
        Failed("SMTP 554: 5.7.1 message from <address> to <address> refused"),
        Retry("SMTP 452: 4.2.2 mailbox of <address> is full", counted=False),
        Sent(message_id=f"<touch-{ok2}@funnel.example>"),
    ]


@pytest.mark.parametrize("wire", [True, False], ids=["wire bytes", "EmailMessage"])
async def test_every_outcome_as_the_server_answers(smtp: tuple[Server, int], wire: bool) -> None:
    server, port = smtp
    messages = _messages(wire)
    channel = SmtpChannel("127.0.0.1", port, 5.0)
    try:
        outcomes = await channel.send_batch(messages)
    finally:
        await channel.close()
    ids = [touch for touch, _ in messages]
    assert [outcomes[t] for t in ids] == _expected(ids)
    # The two accepted messages, on one connection: envelope and headers as built.
    assert [(frm, to) for frm, to, _ in server.received] == [
        ("hello@funnel.example", ["ok@example.com"]),
        ("hello@funnel.example", ["ok2@example.com"]),
    ]
    for (_, _, raw), touch in zip(server.received, (ids[0], ids[5]), strict=True):
        got = email.message_from_bytes(raw, policy=email.policy.default)
        assert got["Message-ID"] == f"<touch-{touch}@funnel.example>"
        assert str(got["Subject"]) == "Välkommen, Åsa!"
        assert str(got["From"]) == "Fünnel <hello@funnel.example>"
        assert isinstance(got, EmailMessage)
        body = got.get_body(("plain",))
        assert body is not None
        assert body.get_content().replace("\r\n", "\n") == "Hej Åsa\n"


async def test_an_unreachable_server_leaves_every_touch_for_later() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    messages = _messages(True)
    outcomes = await SmtpChannel("127.0.0.1", port, 2.0).send_batch(messages)
    assert set(outcomes) == {t for t, _ in messages}
    assert {type(o) for o in outcomes.values()} == {Retry}
    assert all(
        o.error.startswith("SMTP server unreachable") and not o.counted
        for o in outcomes.values()
        if isinstance(o, Retry)
    )
