"""A real SMTP server that files each received message as one ``.eml`` file in a folder.

Run it as its own process with ``python -m funnel_devstack.mailbox --port P --dir D``.

Fault tests make it refuse mail for a while: while the control file ``<dir>/.refuse`` exists
(:func:`refuse_mail`), every recipient is answered with the reply the file holds (e.g.
``451 4.3.2 ...``, a temporary refusal, or a ``5xx``) and nothing is stored;
:func:`accept_mail` removes the file. A file, not a signal, so that any process can switch it.
"""

from __future__ import annotations

import argparse
import contextlib
import email.policy
import os
import signal
import threading
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop
from aiosmtpd.controller import Controller

from funnel_devstack.ports import free_port


def store_message(mail_dir: Path, data: bytes) -> Path:
    """Write ``data`` atomically as ``<mail_dir>/<UTC timestamp>-<short uuid>.eml``, with
    as few system calls as that takes (a capacity bench runs the mailbox beside the stack)."""
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"
    target, tmp = f"{mail_dir}/{name}.eml", f"{mail_dir}/.incoming-{name}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the folder was removed under a running server
        mail_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            os.fchmod(fd, 0o644)  # readable by others whatever the umask, as before
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(target)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
    """Parse every ``.eml`` file in ``mail_dir``, oldest first."""
    parser = BytesParser(policy=email.policy.default)
    messages: list[EmailMessage] = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


class _StoreHandler:
    """aiosmtpd handler: accept any recipient, store the DATA bytes as received."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir

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
        store_message(self.mail_dir, data)
        return "250 Message accepted for delivery"


class MailboxServer:
    """An SMTP server on ``host:port`` running in a background thread of this process."""

    def __init__(self, mail_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.mail_dir = mail_dir
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._controller: Controller | None = None

    def start(self) -> None:
        """Start accepting mail (returns once the server answers)."""
        if self._controller is not None:
            return
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            _StoreHandler(self.mail_dir),
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
