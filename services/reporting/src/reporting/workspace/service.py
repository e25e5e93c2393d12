"""The workspace's use cases: forward one allowed call to its service, and say who calls."""

from __future__ import annotations

import logging

import httpx

from funnel_servicekit.auth import Principal
from reporting.settings import ReportingSettings
from reporting.workspace.models import (
    REQUEST_HEADERS,
    RESPONSE_HEADERS,
    Unreachable,
    UpstreamAnswer,
    UpstreamCall,
)

log = logging.getLogger(__name__)


def base_url(settings: ReportingSettings, service: str) -> str:
    """Where `service` (tracker, intake, notifier) answers, from the settings."""
    urls = {
        "tracker": settings.tracker_url,
        "intake": settings.intake_url,
        "notifier": settings.notifier_url,
    }
    return urls[service].rstrip("/")


def upstream_call(
    settings: ReportingSettings,
    service: str,
    method: str,
    path: str,
    query: tuple[tuple[str, str], ...],
    headers: dict[str, str],
    body: bytes | None,
) -> UpstreamCall:
    """The call to make: only the caller's key, body type and precondition are forwarded."""
    kept = {name: headers[name] for name in REQUEST_HEADERS if name in headers}
    return UpstreamCall(base_url(settings, service), method, path, query, kept, body)


async def forward(client: httpx.AsyncClient, service: str, call: UpstreamCall) -> UpstreamAnswer:
    """Send `call` and give back the service's status, body, content type and ETag unchanged.

    Nothing is stored: the page's own service does the work and answers for it.
    """
    try:
        response = await client.request(
            call.method,
            f"{call.base_url}{call.path}",
            params=call.query,
            headers=call.headers,
            content=call.body,
        )
    except httpx.TimeoutException as exc:
        log.warning("workspace call timed out", extra={"service": service, "error": repr(exc)})
        raise Unreachable(service, timed_out=True) from None
    except httpx.TransportError as exc:
        log.warning("workspace call failed", extra={"service": service, "error": repr(exc)})
        raise Unreachable(service, timed_out=False) from None
    headers = {
        name: response.headers[name] for name in RESPONSE_HEADERS if name in response.headers
    }
    if "content-type" in response.headers:
        headers["content-type"] = response.headers["content-type"]
    return UpstreamAnswer(response.status_code, response.content, headers)


def whoami(principal: Principal) -> dict[str, object]:
    """The calling key's name (the actor of what it does) and its scopes."""
    return {"name": principal.name, "scopes": sorted(principal.scopes)}
