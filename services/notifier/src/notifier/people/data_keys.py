"""Each person's data key, asked of lead-intake (their owner) to open sealed personal data.

Keys are not kept: the notifier stores the contact it needs and nothing else, and an erased
person's key is gone at the source. Unreachable intake is transient (the contact resolver
tries again later, with backoff); a refused or missing credential is a deployment error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import httpx

from funnel_contracts.sealed import SealError, key_from_text
from funnel_servicekit.http_client import ReopeningClient

log = logging.getLogger(__name__)


class KeyServiceUnavailable(ConnectionError):
    """lead-intake did not answer (or answered 5xx): try again later, skip nothing."""


class KeyServiceRefused(RuntimeError):
    """lead-intake refused the call (credential missing, invalid, or lacking pii:decrypt)."""


#: Leads per `POST /v1/data-keys/lookup` (lead-intake takes up to 500).
LOOKUP_BATCH = 500


class DataKeys:
    """`POST {intake}/v1/data-keys/lookup` (a batch's keys in one call) and
    `GET {intake}/v1/leads/{lead_id}/data-key` (one), with the notifier's `pii:decrypt` key.
    An intake without the batch route (404 or 405: an older version during a rolling
    upgrade) is asked one lead at a time from then on."""

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
        #: False once intake answered that it has no batch route.
        self.batches = True

    async def aclose(self) -> None:
        """Called when the contact resolver's run ends; a run again gets a new client."""
        await self._http.aclose()

    async def key_of(self, lead_id: UUID) -> bytes | None:
        """The lead's data key; None when the lead is erased there (410) or unknown (404 with
        intake's not-found problem). A bare 404 (a wrong `FUNNEL_INTAKE_URL`, a proxy) says
        nothing of the lead: refused, and tried again later, never taken for "no person"."""
        response = await self._call("GET", f"/v1/leads/{lead_id}/data-key")
        if response.status_code == 410 or (
            response.status_code == 404 and _problem_type(response) == NOT_FOUND
        ):
            return None
        _check(response)
        try:
            return key_from_text(str(response.json()["key"]))
        except (ValueError, KeyError, TypeError, SealError) as exc:
            raise KeyServiceRefused("lead-intake answered something that is not a key") from exc

    async def keys_of(self, lead_ids: Sequence[UUID]) -> dict[UUID, bytes | None] | None:
        """Each lead's data key (None: unknown there or erased), a call per 500 leads; None
        when intake has no batch route (then ask `key_of`, one lead at a time)."""
        keys: dict[UUID, bytes | None] = {}
        asked = list(dict.fromkeys(lead_ids))
        for start in range(0, len(asked), LOOKUP_BATCH):
            if not self.batches:
                return None
            chunk = asked[start : start + LOOKUP_BATCH]
            response = await self._call(
                "POST", "/v1/data-keys/lookup", json={"lead_ids": [str(i) for i in chunk]}
            )
            if response.status_code in (404, 405):
                log.warning("lead-intake has no batch key lookup; asking one lead at a time")
                self.batches = False
                return None
            _check(response)
            keys.update(_batch_keys(response, chunk))
        return keys

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self._api_key:
            raise KeyServiceRefused("FUNNEL_INTAKE_API_KEY is not set: sealed data is unreadable")
        try:
            return await self._http.get().request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise KeyServiceUnavailable(f"lead-intake unreachable: {type(exc).__name__}") from exc


#: The problem type lead-intake answers an unknown lead with.
NOT_FOUND = "urn:funnel:problem:not-found"


def _problem_type(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    found = body.get("type") if isinstance(body, dict) else None
    return found if isinstance(found, str) else None


def _check(response: httpx.Response) -> None:
    """Unavailable (5xx, 429: try again later) or refused (any other status but 200)."""
    if response.status_code >= 500 or response.status_code == 429:
        raise KeyServiceUnavailable(f"lead-intake answered {response.status_code}")
    if response.status_code != 200:
        raise KeyServiceRefused(f"lead-intake refused the key: {response.status_code}")


def _batch_keys(response: httpx.Response, asked: list[UUID]) -> dict[UUID, bytes | None]:
    """The keys of a batch answer, every lead asked for in it (erased or unknown: None)."""
    try:
        body = response.json()
        keys: dict[UUID, bytes | None] = {
            UUID(str(k["lead_id"])): key_from_text(str(k["key"])) for k in body["keys"]
        }
        for lead_id in [*body["erased"], *body["unknown"]]:
            keys[UUID(str(lead_id))] = None
    except (ValueError, KeyError, TypeError, SealError) as exc:
        raise KeyServiceRefused("lead-intake answered something that is not a key") from exc
    missing = [lead_id for lead_id in asked if lead_id not in keys]
    if missing or len(keys) != len(asked):
        raise KeyServiceRefused("lead-intake answered for other leads than those asked")
    return keys
