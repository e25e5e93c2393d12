"""The SMTP mailbox files each message as one .eml file."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from funnel_devstack.mailbox import MailboxServer, accept_mail, read_messages, refuse_mail
from funnel_devstack.ports import free_port, wait_for_port


def _message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "funnel@example.com"
    msg["To"] = "sales@example.com"
    msg["Subject"] = subject
    msg.set_content("A new lead arrived.\n")
    return msg


def test_stores_one_file_per_message(tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    server = MailboxServer(mail_dir)
    server.start()
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
            smtp.send_message(_message("New lead: Ada Lovelace"))
    finally:
        server.stop()

    files = list(mail_dir.iterdir())
    assert len(files) == 1
    assert files[0].suffix == ".eml"
    assert b"Subject: New lead: Ada Lovelace" in files[0].read_bytes()
    [parsed] = read_messages(mail_dir)
    assert parsed["Subject"] == "New lead: Ada Lovelace"
    assert parsed.get_content().strip() == "A new lead arrived."


def test_runs_as_its_own_process(tmp_path: Path) -> None:
    mail_dir, port = tmp_path / "mail", free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "funnel_devstack.mailbox",
            "--port",
            str(port),
            "--dir",
            str(mail_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(_message("one"))
            smtp.send_message(_message("two"))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert sorted(m["Subject"] for m in read_messages(mail_dir)) == ["one", "two"]


def test_refuses_mail_while_told_to_then_accepts_again(tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    server = MailboxServer(mail_dir)
    server.start()
    try:
        refuse_mail(mail_dir, "451 4.3.2 Not now")
        with (
            smtplib.SMTP(server.host, server.port, timeout=10) as smtp,
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
        ):
            smtp.send_message(_message("Refused"))
        assert refused.value.recipients == {"sales@example.com": (451, b"4.3.2 Not now")}
        assert read_messages(mail_dir) == []
        accept_mail(mail_dir)
        with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
            smtp.send_message(_message("Accepted"))
    finally:
        server.stop()
    assert [str(m["Subject"]) for m in read_messages(mail_dir)] == ["Accepted"]


def test_a_refusal_must_be_an_smtp_error_reply(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        refuse_mail(tmp_path, "250 fine")
