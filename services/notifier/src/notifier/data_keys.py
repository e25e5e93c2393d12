"""Each person's data key, asked of lead-intake (their owner) to open sealed personal data.

Keys are not kept: the notifier stores the contact it needs and nothing else, and an erased
person's key is gone at the source. Unreachable intake is transient (the inbox retries the
batch in place); a refused or missing credential is a deployment error, not a bad event.
"""

from __future__ import annotations

import logging
from uuid import UUID

import httpx

from funnel_contracts.sealed import SealError, key_from_text

log = logging.getLogger(__name__)


class KeyServiceUnavailable(ConnectionError):
    """lead-intake did not answer (or answered 5xx): try again later, skip nothing."""


class KeyServiceRefused(RuntimeError):
    """lead-intake refused the call (credential missing, invalid, or lacking pii:decrypt)."""


class DataKeys:
    """`GET {intake}/v1/leads/{lead_id}/data-key` with the notifier's `pii:decrypt` key."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        """Made on first use, and again after `aclose` (the consumer loop may run again)."""
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.AsyncClient(
                base_url=self._base_url,
                headers=headers,
                timeout=self._timeout,
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def key_of(self, lead_id: UUID) -> bytes | None:
        """The lead's data key; None when the lead is unknown there or erased (404, 410)."""
        if not self._api_key:
            raise KeyServiceRefused("FUNNEL_INTAKE_API_KEY is not set: sealed data is unreadable")
        try:
            response = await self._http().get(f"/v1/leads/{lead_id}/data-key")
        except httpx.TransportError as exc:
            raise KeyServiceUnavailable(f"lead-intake unreachable: {type(exc).__name__}") from exc
        if response.status_code in (404, 410):
            return None
        if response.status_code >= 500 or response.status_code == 429:
            raise KeyServiceUnavailable(f"lead-intake answered {response.status_code}")
        if response.status_code != 200:
            raise KeyServiceRefused(f"lead-intake refused the key: {response.status_code}")
        try:
            return key_from_text(str(response.json()["key"]))
        except (ValueError, KeyError, TypeError, SealError) as exc:
            raise KeyServiceRefused("lead-intake answered something that is not a key") from exc
