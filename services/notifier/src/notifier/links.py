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
class UnsubscribeToken:
    touch_id: UUID
    lead_id: UUID
    category: str


@dataclass(frozen=True)
class ClickToken:
    touch_id: UUID
    lead_id: UUID
    url: str


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

    def _load(self, purpose: str, token: str) -> Any:
        try:
            return self._serializer(purpose).loads(token)
        except BadSignature as exc:
            raise BadLink("invalid or tampered link") from exc

    def unsubscribe_url(self, touch_id: UUID, lead_id: UUID, category: str) -> str:
        token = self._serializer(_UNSUBSCRIBE).dumps([str(touch_id), str(lead_id), category])
        return f"{self.base_url}/t/u/{token}"

    def read_unsubscribe(self, token: str) -> UnsubscribeToken:
        data = self._load(_UNSUBSCRIBE, token)
        try:
            touch, lead, category = data
            return UnsubscribeToken(UUID(touch), UUID(lead), str(category))
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadLink("malformed link") from exc

    def open_url(self, touch_id: UUID, lead_id: UUID) -> str:
        token = self._serializer(_OPEN).dumps([str(touch_id), str(lead_id)])
        return f"{self.base_url}/t/o/{token}.gif"

    def read_open(self, token: str) -> tuple[UUID, UUID]:
        data = self._load(_OPEN, token.removesuffix(".gif"))
        try:
            touch, lead = data
            return UUID(touch), UUID(lead)
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadLink("malformed link") from exc

    def click_url(self, touch_id: UUID, lead_id: UUID, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("only http(s) links can be tracked")
        token = self._serializer(_CLICK).dumps([str(touch_id), str(lead_id), url])
        return f"{self.base_url}/t/c/{token}"

    def read_click(self, token: str) -> ClickToken:
        data = self._load(_CLICK, token)
        try:
            touch, lead, url = data
            parsed = urlsplit(str(url))
            link = ClickToken(UUID(touch), UUID(lead), str(url))
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadLink("malformed link") from exc
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BadLink("not a web link")
        return link
