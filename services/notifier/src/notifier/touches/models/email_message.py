"""Build the email of a touch (pure): text and HTML parts, a Message-ID from the touch id,
and on marketing mail the unsubscribe link plus List-Unsubscribe headers (RFC 2369, 8058).

`wire_email` writes the message once as the bytes SMTP sends (7-bit: plain ASCII as is,
anything else as RFC 2047 words or base64/quoted-printable parts), so nothing parses or
flattens it again on the way out (decision 0080). `build_email` is the same message as the
standard library's `EmailMessage`: what `wire_email` falls back to for an address it does
not write itself (not one plain ASCII address), and the reference its tests compare with.
"""

from __future__ import annotations

import binascii
import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formatdate
from functools import lru_cache
from uuid import UUID

from notifier.channels import WireEmail
from notifier.playbooks.models.templates import RenderedEmail


def message_id(touch_id: UUID, domain: str) -> str:
    """Stable per touch, so a resend after a crash is recognizably the same message."""
    return f"<touch-{touch_id}@{domain}>"


@dataclass(frozen=True)
class MailEnvelope:
    touch_id: UUID
    to: str
    mail_from: str
    domain: str
    locale: str
    unsubscribe_url: str | None = None  # marketing mail only
    open_pixel_url: str | None = None


def _with_pixel(html: str, open_pixel_url: str | None) -> str:
    if not open_pixel_url:
        return html
    pixel = f'<img src="{open_pixel_url}" width="1" height="1" alt="">'
    return html.replace("</body>", pixel + "</body>") if "</body>" in html else html + pixel


def build_email(envelope: MailEnvelope, rendered: RenderedEmail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = envelope.mail_from
    msg["To"] = envelope.to
    msg["Subject"] = rendered.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id(envelope.touch_id, envelope.domain)
    msg["X-Funnel-Touch-Id"] = str(envelope.touch_id)
    if envelope.unsubscribe_url:
        # RFC 8058: a POST of "List-Unsubscribe=One-Click" to this URL unsubscribes at once.
        msg["List-Unsubscribe"] = f"<{envelope.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(rendered.text)
    if rendered.html is not None:
        msg.add_alternative(_with_pixel(rendered.html, envelope.open_pixel_url), subtype="html")
    msg["Content-Language"] = envelope.locale  # after set_content, which clears Content-*
    return msg


# --- the message as SMTP sends it -----------------------------------------------------------

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# One ASCII dot-atom address: written as is, and the standard library reads it back the same.
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
_LINE_BREAK = "Header values may not contain linefeed or carriage return characters"
_MAX_LINE = 78  # the standard library's (RFC 5322's recommended) line length
_WORD_BYTES = 42  # per RFC 2047 word: "Subject: =?utf-8?b?" + 56 base64 characters + "?=" <= 78
_CRLF = b"\r\n"


@lru_cache(maxsize=8)
def _from_line(mail_from: str) -> tuple[bytes, str] | None:
    """The From line as the standard library writes it (a display name may need encoding)
    and its one address; None when it is not one plain address. Once per setting value."""
    msg = EmailMessage()
    msg["From"] = mail_from  # a line break raises ValueError, as in build_email
    addresses = msg["From"].addresses
    if len(addresses) != 1 or not _PLAIN_ADDRESS.fullmatch(addresses[0].addr_spec):
        return None
    line = msg.as_bytes(policy=email.policy.SMTP).split(b"\r\n\r\n", 1)[0] + _CRLF
    return line, addresses[0].addr_spec


def _header(name: bytes, value: str) -> bytes:
    """A structured value written as is (a URL, a language tag): never folded."""
    if "\r" in value or "\n" in value:
        raise ValueError(_LINE_BREAK)
    if not value.isascii():
        return _encoded_words(name, value)
    return name + b": " + value.encode("ascii") + _CRLF


def _encoded_words(name: bytes, value: str) -> bytes:
    """An unstructured header: as is when short printable ASCII, else RFC 2047 base64 words
    of whole UTF-8 characters, one per line."""
    if "\r" in value or "\n" in value:
        raise ValueError(_LINE_BREAK)
    if value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= _MAX_LINE:
        return name + b": " + value.encode("ascii") + _CRLF
    data = value.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and 0x80 <= data[end] < 0xC0:  # not inside a character
            end -= 1
        words.append(b"=?utf-8?b?" + binascii.b2a_base64(data[start:end], newline=False) + b"?=")
        start = end
    return name + b": " + b"\r\n ".join(words) + _CRLF


def _text_part(content: str, subtype: bytes) -> tuple[bytes, bytes]:
    """A text part's Content-Type/-Transfer-Encoding lines and its body (CRLF line ends):
    7bit when it is ASCII in short lines (as the standard library chooses), else
    quoted-printable (ASCII with long lines) or base64 (any other character). A 7bit body
    never holds "=_", which starts every boundary (and which neither encoding can write)."""
    data = content.encode("utf-8")
    lines = data.splitlines()
    body = _CRLF.join(lines) + _CRLF
    ascii_ = data.isascii()
    if ascii_ and max(map(len, lines), default=0) <= _MAX_LINE and b"=_" not in data:
        cte, encoded = b"7bit", body
    elif ascii_:
        cte, encoded = b"quoted-printable", binascii.b2a_qp(body, istext=True)
    else:
        b64 = binascii.b2a_base64(body, newline=False)
        cte = b"base64"
        encoded = _CRLF.join(b64[i : i + 76] for i in range(0, len(b64), 76)) + _CRLF
    head = (
        b"Content-Type: text/" + subtype + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: " + cte + _CRLF
    )
    return head, encoded


def wire_email(envelope: MailEnvelope, rendered: RenderedEmail) -> WireEmail | EmailMessage:
    """The message of `build_email` as the bytes SMTP sends; an address this does not write
    itself (not one plain ASCII address) gets `build_email`'s message instead."""
    sender = _from_line(envelope.mail_from)
    if (
        sender is None
        or not _PLAIN_ADDRESS.fullmatch(envelope.to)
        or not _DOMAIN.fullmatch(envelope.domain)
    ):
        return build_email(envelope, rendered)
    from_line, sender_address = sender
    mid = message_id(envelope.touch_id, envelope.domain)
    touch = str(envelope.touch_id)
    out = [
        from_line,
        b"To: " + envelope.to.encode("ascii") + _CRLF,
        _encoded_words(b"Subject", rendered.subject),
        b"Date: " + format_datetime(datetime.now(UTC)).encode("ascii") + _CRLF,
        b"Message-ID: " + mid.encode("ascii") + _CRLF,
        b"X-Funnel-Touch-Id: " + touch.encode("ascii") + _CRLF,
    ]
    if envelope.unsubscribe_url:
        # RFC 8058: a POST of "List-Unsubscribe=One-Click" to this URL unsubscribes at once.
        out.append(_header(b"List-Unsubscribe", f"<{envelope.unsubscribe_url}>"))
        out.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    out.append(b"MIME-Version: 1.0\r\n")
    language = _header(b"Content-Language", envelope.locale)
    text_head, text_body = _text_part(rendered.text, b"plain")
    if rendered.html is None:
        out += [text_head, language, _CRLF, text_body]
    else:
        html_head, html_body = _text_part(
            _with_pixel(rendered.html, envelope.open_pixel_url), b"html"
        )
        boundary = b"=_touch-" + envelope.touch_id.hex.encode("ascii")
        out += [
            b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\n',
            language,
            _CRLF,
            b"--" + boundary + _CRLF, text_head, _CRLF, text_body,
            _CRLF + b"--" + boundary + _CRLF, html_head, _CRLF, html_body,
            _CRLF + b"--" + boundary + b"--" + _CRLF,
        ]  # fmt: skip
    return WireEmail(mid, sender_address, envelope.to, b"".join(out))
