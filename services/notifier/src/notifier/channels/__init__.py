"""The ways a touch goes out: email over SMTP, signed webhooks (sales tasks go by webhook
too); each hand-off gives an Outcome. Shared by the sender and the playbook checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sent:
    message_id: str | None = None


@dataclass(frozen=True)
class Retry:
    """Not delivered this time. `counted` tries lead to failure after the last attempt;
    an uncounted one (the SMTP server is down or refuses for now) delays the touch, for up
    to FUNNEL_TOUCH_RETRY_FOR_SECONDS after it fell due."""

    error: str
    delay_s: float | None = None
    counted: bool = True


@dataclass(frozen=True)
class Failed:
    """Delivery can never succeed as is (a 4xx, a refused recipient or destination)."""

    error: str


Outcome = Sent | Retry | Failed


@dataclass(frozen=True, slots=True)
class WireEmail:
    """An email ready for SMTP: the envelope's addresses and the message as the bytes that
    go after DATA (7-bit, CRLF line ends), built once; sent as is, never parsed again."""

    message_id: str
    sender: str
    recipient: str
    data: bytes
