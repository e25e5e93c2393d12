"""Build the email of a touch (pure): text and HTML parts, a Message-ID from the touch id,
and on marketing mail the unsubscribe link plus List-Unsubscribe headers (RFC 2369, 8058)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from uuid import UUID

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
        html = rendered.html
        if envelope.open_pixel_url:
            pixel = f'<img src="{envelope.open_pixel_url}" width="1" height="1" alt="">'
            html = html.replace("</body>", pixel + "</body>") if "</body>" in html else html + pixel
        msg.add_alternative(html, subtype="html")
    msg["Content-Language"] = envelope.locale  # after set_content, which clears Content-*
    return msg
