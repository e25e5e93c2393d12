"""Build the email of a touch (pure): text and HTML parts, a Message-ID from the touch id."""

from __future__ import annotations

import html
from email.message import EmailMessage
from uuid import UUID


def message_id(touch_id: UUID, domain: str) -> str:
    """Stable per touch, so a resend after a crash is recognizably the same message."""
    return f"<touch-{touch_id}@{domain}>"


def welcome_email(
    *, touch_id: UUID, to: str, first_name: str | None, mail_from: str, domain: str
) -> EmailMessage:
    name = first_name or "there"
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = to
    msg["Subject"] = "Welcome!"
    msg["Message-ID"] = message_id(touch_id, domain)
    msg["X-Funnel-Touch-Id"] = str(touch_id)
    msg.set_content(f"Hi {name},\n\nThanks for getting in touch. We'll be in touch soon.\n")
    msg.add_alternative(
        f"<html><body><p>Hi {html.escape(name)},</p>"
        "<p>Thanks for getting in touch. We'll be in touch soon.</p></body></html>",
        subtype="html",
    )
    return msg
