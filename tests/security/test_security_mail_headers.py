"""What a person typed reaches the mail as inert text: no header injection, no template run.

Pure: the notifier renders the template and builds the message; the bytes are inspected as
the SMTP server would get them. (Intake refuses CRLF in emails and folds names to one line
before any of this; these are the notifier's own defences, for whatever an event carries.)
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from notifier.playbooks.models import LocalizedTemplate
from notifier.playbooks.models.templates import render
from notifier.touches.models.email_message import MailEnvelope, build_email

HOSTILE_NAMES = [
    "Ada\r\nBcc: stolen@evil.example",
    "Ada\nSubject: you won",
    "{{ 7*7 }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "${7*7}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "<script>alert(1)</script>",
    "=?utf-8?b?QmNjOiB4QHkueg==?=",
]
TEMPLATE = LocalizedTemplate(
    subject="Hello {{ first_name }}",
    text="Hi {{ first_name }}",
    html="<p>Hi {{ first_name }}</p>",
)


def _envelope(to: str = "ada@example.com") -> MailEnvelope:
    return MailEnvelope(
        touch_id=uuid4(), to=to, mail_from="Funnel <hello@funnel.example>",
        domain="funnel.example", locale="en",
    )  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_is_inert_in_every_part(name: str) -> None:
    rendered = render(TEMPLATE, {"first_name": name})
    raw = build_email(_envelope(), rendered).as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    names = [line.split(b":")[0].lower() for line in head.splitlines() if line[:1] not in b" \t"]
    assert b"bcc" not in names
    assert names.count(b"subject") == 1
    assert names.count(b"to") == 1
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject
    assert "49" not in rendered.text  # the value is printed, never evaluated
    assert rendered.html is not None
    assert "<script>" not in rendered.html


@pytest.mark.parametrize("to", ["a@b.co\r\nBcc: x@y.z", "a@b.co\nBcc: x@y.z", "a@b.co\rX-Evil: 1"])
def test_a_recipient_with_a_line_break_never_becomes_a_header(to: str) -> None:
    rendered = render(TEMPLATE, {"first_name": "Ada"})
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_email(_envelope(to), rendered)
