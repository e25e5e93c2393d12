"""Each person's data key, asked of lead-intake (their owner) to open sealed personal data.

Keys are not kept: the notifier stores the contact it needs and nothing else, and an erased
person's key is gone at the source. Unreachable intake is transient (the contact resolver
tries again later, with backoff); a refused or missing credential is a deployment error.
"""

from __future__ import annotations

import logging
from uuid import UUID

import httpx

from funnel_contracts.sealed import SealError, key_from_text
from funnel_servicekit.http_client import ReopeningClient

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
        self._http = ReopeningClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Called when the contact resolver's run ends; a run again gets a new client."""
        await self._http.aclose()

    async def key_of(self, lead_id: UUID) -> bytes | None:
        """The lead's data key; None when the lead is unknown there or erased (404, 410)."""
        if not self._api_key:
            raise KeyServiceRefused("FUNNEL_INTAKE_API_KEY is not set: sealed data is unreadable")
        try:
            response = await self._http.get().get(f"/v1/leads/{lead_id}/data-key")
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
