"""The SMTP mailbox appends each message to one mbox file."""

from __future__ import annotations

import mailbox
import signal
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from funnel_devstack.mailbox import (
    SPOOL_FILE,
    MailboxServer,
    Spool,
    accept_mail,
    read_messages,
    read_raw_messages,
    refuse_mail,
)
from funnel_devstack.ports import free_port, wait_for_port


def _message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "funnel@example.com"
    msg["To"] = "sales@example.com"
    msg["Subject"] = subject
    msg.set_content("A new lead arrived.\n")
    return msg


def test_appends_each_message_to_one_mbox_file(tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    server = MailboxServer(mail_dir)
    server.start()
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
            smtp.send_message(_message("New lead: Ada Lovelace"))
            smtp.send_message(_message("New lead: Grace Hopper"))
    finally:
        server.stop()

    assert [p.name for p in mail_dir.iterdir()] == [SPOOL_FILE]
    raw = (mail_dir / SPOOL_FILE).read_bytes()
    assert raw.startswith(b"From funnel-mailbox ")
    assert raw.count(b"\nFrom funnel-mailbox ") == 1  # two messages, two separator lines
    first, second = read_messages(mail_dir)
    assert first["Subject"] == "New lead: Ada Lovelace"
    assert first.get_content().strip() == "A new lead arrived."
    assert second["Subject"] == "New lead: Grace Hopper"
    # A mail reader sees the same two messages (Python's own mbox reader here).
    assert [m["Subject"] for m in mailbox.mbox(mail_dir / SPOOL_FILE)] == [
        "New lead: Ada Lovelace",
        "New lead: Grace Hopper",
    ]


def test_lines_starting_with_from_come_back_as_sent(tmp_path: Path) -> None:
    """A body line starting "From " would split an mbox: it is quoted in the file (">From ",
    and ">From " becomes ">>From "), and read back as the client sent it."""
    body = b"Subject: quoting\r\n\r\nFrom the team\r\n>From a quote\r\nFromage\r\n"
    spool = Spool(tmp_path)
    spool.append(body)
    spool.append(b"Subject: next\r\n\r\nhi\r\n")
    spool.close()
    raw = (tmp_path / SPOOL_FILE).read_bytes()
    assert b"\n>From the team\r\n>>From a quote\r\nFromage" in raw
    messages, end = read_raw_messages(tmp_path)
    assert messages == [body, b"Subject: next\r\n\r\nhi\r\n"]
    assert end == len(raw)
    assert [m["Subject"] for m in mailbox.mbox(tmp_path / SPOOL_FILE)] == ["quoting", "next"]


def test_a_reader_goes_on_from_where_it_stopped_and_skips_a_half_written_message(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    spool.append(b"Subject: one\r\n\r\n1\r\n")
    first, offset = read_raw_messages(tmp_path)
    assert len(first) == 1
    spool.append(b"Subject: two\r\n\r\n2\r\n")
    spool.close()
    # A crash in the middle of the third message's write: what a reader sees, then what the
    # next writer keeps.
    whole = (tmp_path / SPOOL_FILE).read_bytes()
    with (tmp_path / SPOOL_FILE).open("ab") as f:
        f.write(b"From funnel-mailbox 500 2026-12-07T00:00:00.000000Z\nSubject: thr")
    more, offset_after = read_raw_messages(tmp_path, offset)
    assert more == [b"Subject: two\r\n\r\n2\r\n"]
    assert offset_after == len(whole)  # the half message is not read, nor skipped over
    again = Spool(tmp_path)
    again.append(b"Subject: four\r\n\r\n4\r\n")
    again.close()
    assert [m["Subject"] for m in read_messages(tmp_path)] == ["one", "two", "four"]
    assert read_raw_messages(tmp_path, offset_after)[0] == [b"Subject: four\r\n\r\n4\r\n"]


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
