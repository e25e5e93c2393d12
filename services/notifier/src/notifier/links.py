"""Signed tracking and unsubscribe links (pure): the token carries what the link may do.

A click link carries its target URL inside the signed token, so the redirect goes only where
the notifier itself pointed it: no open redirect. Tokens never carry personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from itsdangerous import BadSignature, URLSafeSerializer

from notifier.settings import NotifierSettings

_UNSUBSCRIBE = "unsubscribe"
_OPEN = "open"
_CLICK = "click"


class BadLink(ValueError):
    """A token that was not signed by us, or is not the kind of link asked for."""


@dataclass(frozen=True)
class Link:
    """What a signed link names: its touch and person and, for an unsubscribe link the
    category it leaves, for a click link the URL it goes to (an open pixel names neither)."""

    touch_id: UUID
    lead_id: UUID
    target: str = ""


class LinkSigner:
    def __init__(self, secret: str, base_url: str) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    @classmethod
    def of(cls, settings: NotifierSettings) -> LinkSigner:
        """The signer of the links this deployment sends and reads."""
        return cls(settings.link_signing_key.get_secret_value(), settings.public_base_url)

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        return URLSafeSerializer(self._secret, salt=f"funnel-notifier-{purpose}")

    def _read(self, purpose: str, token: str) -> Link:
        try:
            data: Any = self._serializer(purpose).loads(token)
        except BadSignature as exc:
            raise BadLink("invalid or tampered link") from exc
        try:
            touch, lead, *target = data
            return Link(UUID(touch), UUID(lead), *(str(t) for t in target[:1]))
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadLink("malformed link") from exc

    def unsubscribe_url(self, touch_id: UUID, lead_id: UUID, category: str) -> str:
        token = self._serializer(_UNSUBSCRIBE).dumps([str(touch_id), str(lead_id), category])
        return f"{self.base_url}/t/u/{token}"

    def read_unsubscribe(self, token: str) -> Link:
        """The link; its `target` is the category to leave."""
        link = self._read(_UNSUBSCRIBE, token)
        if not link.target:
            raise BadLink("malformed link")
        return link

    def open_url(self, touch_id: UUID, lead_id: UUID) -> str:
        token = self._serializer(_OPEN).dumps([str(touch_id), str(lead_id)])
        return f"{self.base_url}/t/o/{token}.gif"

    def read_open(self, token: str) -> Link:
        return self._read(_OPEN, token.removesuffix(".gif"))

    def click_url(self, touch_id: UUID, lead_id: UUID, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("only http(s) links can be tracked")
        token = self._serializer(_CLICK).dumps([str(touch_id), str(lead_id), url])
        return f"{self.base_url}/t/c/{token}"

    def read_click(self, token: str) -> Link:
        """The link; its `target` is the URL to redirect to, always a web address."""
        link = self._read(_CLICK, token)
        parsed = urlsplit(link.target)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BadLink("not a web link")
        return link
