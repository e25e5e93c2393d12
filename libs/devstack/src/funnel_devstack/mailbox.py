"""A real SMTP server that appends each received message to one mailbox file in a folder.

The file, ``<dir>/inbox.mbox``, is an mboxrd mailbox (readable as text, and by mail readers
and Python's ``mailbox.mbox``); each message is durable on disk before the server's ``250``.

Run it as its own process with ``python -m funnel_devstack.mailbox --port P --dir D``.

Fault tests make it refuse mail for a while: while the control file ``<dir>/.refuse`` exists
(:func:`refuse_mail`), every recipient is answered with the reply the file holds (e.g.
``451 4.3.2 ...``, a temporary refusal, or a ``5xx``) and nothing is stored;
:func:`accept_mail` removes the file. A file, not a signal, so that any process can switch it.
"""

from __future__ import annotations

import argparse
import email.policy
import os
import re
import signal
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop
from aiosmtpd.controller import Controller

from funnel_devstack.ports import free_port

# Every message goes into one append-only file: an mboxrd mailbox whose separator lines also
# give each message's length. Writing a file per message cost the kernel more CPU than
# the SMTP conversation itself (a create in a folder of thousands and a rename, about 1 ms of
# CPU a message), and the mailbox runs on the same cores as the stack in the capacity bench
# (docs/decisions/0093).
SPOOL_FILE = "inbox.mbox"
_SEPARATOR = b"From funnel-mailbox "
_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)


def _frame(data: bytes) -> bytes:
    """One message as it is appended: ``From funnel-mailbox <length> <UTC time>``, the
    message with its lines starting ``From `` (after any ``>``) quoted once more, a newline."""
    quoted = _QUOTE.sub(rb">\1", data)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    return b"%s%d %s\n%s\n" % (_SEPARATOR, len(quoted), at, quoted)


def _frames(raw: bytes, offset: int = 0) -> tuple[list[bytes], int]:
    """The messages (as received) framed in ``raw`` from ``offset`` on, and where the first
    one not yet complete (or the end) is."""
    found: list[bytes] = []
    while True:
        eol = raw.find(b"\n", offset)
        if eol < 0 or not raw.startswith(_SEPARATOR, offset):
            if eol >= 0:
                raise ValueError(f"not a separator line at byte {offset} of the mailbox file")
            return found, offset
        length = int(raw[offset + len(_SEPARATOR) : eol].split(b" ", 1)[0])
        end = eol + 1 + length
        if end + 1 > len(raw):
            return found, offset  # still being written
        found.append(_UNQUOTE.sub(rb"\1", raw[eol + 1 : end]))
        offset = end + 1


def read_raw_messages(mail_dir: Path, offset: int = 0) -> tuple[list[bytes], int]:
    """The messages received in ``mail_dir`` from byte ``offset`` of its mailbox file on, each
    as the bytes the client sent, oldest first; and the offset to read on from next time.
    Only the file from ``offset`` on is read."""
    try:
        with (mail_dir / SPOOL_FILE).open("rb") as f:
            f.seek(offset)
            raw = f.read()
    except FileNotFoundError:
        return [], offset
    found, complete = _frames(raw)
    return found, offset + complete


class Spool:
    """The append-only mailbox file of one folder, for its one writer: each message written
    with one ``write`` and made durable (``fdatasync``) before ``append`` returns. Opening it
    cuts off a message left half written by a crash."""

    def __init__(self, mail_dir: Path) -> None:
        self.path = mail_dir / SPOOL_FILE
        self._fd: int | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        raw = self.path.read_bytes()
        _, complete = _frames(raw)
        if complete < len(raw):
            os.ftruncate(fd, complete)
        return fd

    def append(self, data: bytes) -> None:
        if self._fd is None or not os.access(self.path, os.F_OK):
            self.close()  # the file was removed under a running server: a new one
            self._fd = self._open()
        view = memoryview(_frame(data))
        while view:
            view = view[os.write(self._fd, view) :]
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


REFUSE_FILE = ".refuse"
DEFAULT_REFUSAL = "451 4.3.2 Mailbox refusing mail for a while, try again later"


def refuse_mail(mail_dir: Path, reply: str = DEFAULT_REFUSAL) -> None:
    """Make the mailbox serving ``mail_dir`` answer every recipient with ``reply``."""
    code = reply.split(" ", 1)[0]
    if not (code.isdigit() and len(code) == 3 and code[0] in "45"):
        raise ValueError("the reply must start with a 4xx or 5xx SMTP code")
    mail_dir.mkdir(parents=True, exist_ok=True)
    (mail_dir / REFUSE_FILE).write_text(reply.strip() + "\n")


def accept_mail(mail_dir: Path) -> None:
    """Let the mailbox serving ``mail_dir`` accept mail again."""
    (mail_dir / REFUSE_FILE).unlink(missing_ok=True)


def _refusal(mail_dir: Path) -> str | None:
    if not os.access(f"{mail_dir}/{REFUSE_FILE}", os.F_OK):  # the usual case, no exception
        return None
    try:
        return (mail_dir / REFUSE_FILE).read_text().strip() or DEFAULT_REFUSAL
    except FileNotFoundError:
        return None


def read_messages(mail_dir: Path) -> list[EmailMessage]:
    """Parse every message received in ``mail_dir``, oldest first."""
    parser = BytesParser(policy=email.policy.default)
    messages: list[EmailMessage] = []
    for raw in read_raw_messages(mail_dir)[0]:
        message = parser.parsebytes(raw)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


class _StoreHandler:
    """aiosmtpd handler: accept any recipient, append the DATA bytes as received."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        self.spool = Spool(mail_dir)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        refusal = _refusal(self.mail_dir)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
        self.spool.append(data)
        return "250 Message accepted for delivery"


class MailboxServer:
    """An SMTP server on ``host:port`` running in a background thread of this process."""

    def __init__(self, mail_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.mail_dir = mail_dir
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._handler = _StoreHandler(mail_dir)
        self._controller: Controller | None = None

    def start(self) -> None:
        """Start accepting mail (returns once the server answers)."""
        if self._controller is not None:
            return
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            self._handler,
            hostname=self.host,
            port=self.port,
            loop=uvloop.new_event_loop(),  # its thread's loop: the C one, as the services'
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop the server."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            self._handler.spool.close()

    def messages(self) -> list[EmailMessage]:
        """The messages received so far, oldest first."""
        return read_messages(self.mail_dir)


def main(argv: list[str] | None = None) -> int:
    """Run the mailbox until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m funnel_devstack.mailbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="folder for the .eml files")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server = MailboxServer(args.dir, host=args.host, port=args.port)
    server.start()
    print(f"mailbox listening on {args.host}:{args.port}, storing in {args.dir}", flush=True)
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
