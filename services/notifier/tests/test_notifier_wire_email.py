"""The email as SMTP sends it (`wire_email`) against the standard library's message
(`build_email`, flattened as aiosmtplib's `send_message` did): parsed back as a mail client
reads them, every header decodes to the same value and every part to the same text (pure)."""

from __future__ import annotations

import email.policy
import itertools
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from uuid import UUID, uuid4

import pytest
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message

from notifier.channels import WireEmail
from notifier.links import LinkSigner
from notifier.playbooks.models.templates import RenderedEmail, render, shipped
from notifier.touches.models.email_message import MailEnvelope, build_email, wire_email

SIGNER = LinkSigner("k" * 32, "http://127.0.0.1:8003")
HTML = "<html><body><p>Hi {name},</p>\n<p>Thanks.</p></body></html>\n"
SUBJECTS = [
    "Welcome!",
    "Välkommen, Åsa!",
    "歡迎 張偉 感謝您與我們聯繫",
    " ".join(["Добро пожаловать, Анна!"] * 4),  # long: several encoded words
    "A long ASCII subject that does not fit on one line of seventy-eight characters at all",
    "Emoji 🎉 and ß",
    "Hello =?utf-8?b?QmNjOiB4QHkueg==?=",  # an encoded word a name smuggled in
    "{{ 7*7 }} <script>alert(1)</script>",
    "",
]
NAMES = ["Ada", "Åsa Öberg", "張偉", "Zoë 🎉", "Ada\u2028Lovelace"]
TEXTS = [
    "Hi {name},\n\nThanks for getting in touch.\n",
    "Hi {name},\r\nno final line end",
    "A line far longer than seventy-eight characters, which plain 7bit may not carry as is: "
    "{name} " * 3 + "\n",
    "A =_ looks like a boundary's start: {name}\n",
    "\n.\n.. dots at line starts {name}\n",
]
FROMS = [
    "Funnel <hello@funnel.example>",
    "Fünnel Åb <hello@funnel.example>",
    "hello@funnel.example",
]


def _envelope(
    touch: UUID, lead: UUID, mail_from: str, marketing: bool, pixel: bool
) -> MailEnvelope:
    return MailEnvelope(
        touch_id=touch, to="ada.lovelace+news@example.com", mail_from=mail_from,
        domain="funnel.example", locale="sv",
        unsubscribe_url=SIGNER.unsubscribe_url(touch, lead, "marketing") if marketing else None,
        open_pixel_url=SIGNER.open_url(touch, lead) if pixel else None,
    )  # fmt: skip


def _received(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _as_sent_before(msg: EmailMessage, cte_type: str) -> bytes:
    """What `send_message` handed the server (8bit: the server offers 8BITMIME, as ours)."""
    return flatten_message(msg, utf8=False, cte_type=cte_type)


def _headers(msg: Message) -> dict[str, str]:
    """Every header's decoded value, but the transfer encoding (the part's bytes, compared
    decoded) and the boundary (any that the body does not contain)."""
    out: dict[str, str] = {}
    for name in msg:
        key = name.lower()
        assert key not in out, f"{name} twice"
        if key == "content-transfer-encoding":
            continue
        if key == "content-type":
            params = {k: v for k, v in msg.get_params(failobj=[])[1:] if k != "boundary"}
            out[key] = f"{msg.get_content_type()} {sorted(params.items())}"
        elif key == "date":
            out[key] = "date"  # compared as times below
        else:
            out[key] = str(msg[name])
    return out


def _parts(msg: EmailMessage) -> list[tuple[str, dict[str, str], str]]:
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        assert isinstance(part, EmailMessage)
        # A part's own headers (a one-part message's are the message's, compared above).
        headers = {k: v for k, v in _headers(part).items() if k.startswith("content-")}
        # A client shows CRLF and LF alike: the old 7bit/8bit parts decode with the wire's
        # CRLF, its base64 and quoted-printable ones with LF.
        parts.append((part.get_content_type(), headers, part.get_content().replace("\r\n", "\n")))
    return parts


def _assert_same_mail(wire: WireEmail, reference: EmailMessage, subject: str) -> None:
    for cte_type in ("8bit", "7bit"):  # a server with and without 8BITMIME
        before = _received(_as_sent_before(reference, cte_type))
        after = _received(wire.data)
        expected = _headers(before)
        # The subject as rendered. Folding a long non-ASCII subject, the standard library
        # drops the space between two of its encoded words ("Анна!Добро"); the new bytes
        # keep it, and agree with the old everywhere else.
        if str(after["Subject"]) != str(before["Subject"]):
            assert str(after["Subject"]) == subject
            assert len(subject.encode()) > 42
            assert not subject.isascii()
            assert str(before["Subject"]).replace(" ", "") == subject.replace(" ", "")
            expected["subject"] = subject
        assert _headers(after) == expected
        assert (
            abs(
                parsedate_to_datetime(after["Date"]) - parsedate_to_datetime(before["Date"])
            ).total_seconds()
            < 5
        )
        assert _parts(after) == _parts(before)
        assert all(not p.defects for p in after.walk())
    # The SMTP envelope, as send_message read it from the headers.
    assert wire.sender == extract_sender(reference)
    assert [wire.recipient] == extract_recipients(reference)
    assert wire.message_id == str(reference["Message-ID"])
    # 7-bit, CRLF only, no line over RFC 5322's 998: any server takes it without 8BITMIME.
    assert wire.data.isascii()
    lines = wire.data.split(b"\r\n")
    assert b"\r" not in b"".join(lines)
    assert b"\n" not in b"".join(lines)
    assert max(map(len, lines)) <= 998
    head = wire.data.split(b"\r\n\r\n", 1)[0]
    assert (
        max(len(line) for line in head.split(b"\r\n") if not line.startswith(b"List-Unsub")) <= 78
    )


@pytest.mark.parametrize(("subject", "name"), list(itertools.product(SUBJECTS, NAMES)))
def test_the_wire_bytes_read_as_the_standard_librarys_message(subject: str, name: str) -> None:
    """Marketing or not, with the pixel or not, with HTML or not; the texts and senders in
    turn (every one meets every subject)."""
    touch, lead = uuid4(), uuid4()
    combos = itertools.product((False, True), (False, True), (True, False))
    for i, (marketing, pixel, with_html) in enumerate(combos):
        text = TEXTS[(i + SUBJECTS.index(subject)) % len(TEXTS)]
        mail_from = FROMS[(i + NAMES.index(name)) % len(FROMS)]
        rendered = RenderedEmail(
            subject=subject,
            text=text.format(name=name),
            html=HTML.format(name=name) if with_html else None,
        )
        envelope = _envelope(touch, lead, mail_from, marketing, pixel)
        wire = wire_email(envelope, rendered)
        assert isinstance(wire, WireEmail)
        _assert_same_mail(wire, build_email(envelope, rendered), rendered.subject)


@pytest.mark.parametrize("template", ["welcome", "nurture-1", "abandoned-cart", "win-back"])
def test_every_shipped_template_and_locale_reads_the_same(template: str) -> None:
    touch, lead = uuid4(), uuid4()
    for locale, localized in shipped(template).items():
        for name in NAMES:
            context = {
                "first_name": name, "name": name, "playbook": template, "stage": "interest",
                "funnel_id": "digital-sales",
                "tracked": lambda url: SIGNER.click_url(touch, lead, str(url)),
                "unsubscribe_url": SIGNER.unsubscribe_url(touch, lead, "marketing"),
            }  # fmt: skip
            rendered = render(localized, context, locale)
            envelope = _envelope(touch, lead, "Funnel <hello@funnel.example>", True, True)
            envelope = MailEnvelope(**{**envelope.__dict__, "locale": locale})
            wire = wire_email(envelope, rendered)
            assert isinstance(wire, WireEmail)
            _assert_same_mail(wire, build_email(envelope, rendered), rendered.subject)


def test_a_marketing_mails_list_unsubscribe_is_one_url_in_angle_brackets() -> None:
    touch, lead = uuid4(), uuid4()
    envelope = _envelope(touch, lead, "Funnel <hello@funnel.example>", True, True)
    wire = wire_email(envelope, RenderedEmail("Hi", "Hi", None))
    assert isinstance(wire, WireEmail)
    url = SIGNER.unsubscribe_url(touch, lead, "marketing")
    assert f"List-Unsubscribe: <{url}>\r\n".encode() in wire.data
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in wire.data
    assert b"=?" not in wire.data.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "to", ["Ada <ada@example.com>", "ada@example.com, eve@example.com", "åsa@exempel.se",
           '"a b"@example.com', "a..b@example.com"],
)  # fmt: skip
def test_an_address_it_does_not_write_itself_gets_the_standard_librarys_message(to: str) -> None:
    envelope = MailEnvelope(uuid4(), to, "Funnel <hello@funnel.example>", "funnel.example", "en")
    built = wire_email(envelope, RenderedEmail("Hi", "Hi", "<p>Hi</p>"))
    assert isinstance(built, EmailMessage)
    assert str(built["To"]) == str(build_email(envelope, RenderedEmail("Hi", "Hi", None))["To"])


@pytest.mark.parametrize(
    ("field", "value"),
    [("to", "a@b.co\r\nBcc: x@y.z"), ("locale", "en\r\nBcc: x@y.z"),
     ("unsubscribe_url", "https://u.example/x\nBcc: x@y.z"),
     ("mail_from", "F <f@x.example>\nBcc: y@z")],
)  # fmt: skip
def test_a_line_break_in_any_header_value_is_refused_as_before(field: str, value: str) -> None:
    base = dict(touch_id=uuid4(), to="ada@example.com", mail_from="F <f@funnel.example>",
                domain="funnel.example", locale="en")  # fmt: skip
    envelope = MailEnvelope(**{**base, field: value})  # type: ignore[arg-type]
    rendered = RenderedEmail("Hi", "Hi", None)
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_email(envelope, rendered)
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        wire_email(envelope, rendered)
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        wire_email(envelope, RenderedEmail("Hi\r\nBcc: x@y.z", "Hi", None))
