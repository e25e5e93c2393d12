"""Signed webhooks: only to allowed hosts on public addresses, the touch id as Idempotency-Key.

The host is resolved once, every address checked, and the request goes to the checked
address (Host header and TLS SNI keep the name), so DNS cannot be re-pointed at an internal
address between the check and the call.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx

from funnel_servicekit.http_client import ReopeningClient
from notifier.channels import Failed, Outcome, Retry, Sent
from notifier.channels.webhook_rules import (
    RefusedDestination,
    check_addresses,
    check_host,
    is_permanent,
    retry_after_seconds,
    signature,
)


class WebhookChannel:
    def __init__(
        self,
        *,
        secret: str,
        allowed_hosts: Sequence[str],
        allow_private: bool,
        timeout: float,
    ) -> None:
        self.secret = secret
        self.allowed_hosts = list(allowed_hosts)
        self.allow_private = allow_private
        self.timeout = timeout
        # One client for every call: building one loads the CA bundle, ~30 ms of CPU that
        # stopped the event loop on every webhook. No connection is kept between calls: each
        # call goes to the address it has just checked, under its own Host and TLS SNI, so a
        # pooled connection must never carry another host's request.
        self._http = ReopeningClient(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def resolve(self, url: str) -> tuple[str, str]:
        """(URL to call, Host header): the host checked against the allow-list and its
        addresses against the private ranges; RefusedDestination otherwise."""
        host = check_host(url, self.allowed_hosts)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {host}") from exc
        addresses = [str(info[4][0]) for info in infos]
        check_addresses(addresses, self.allow_private)
        ip = addresses[0]
        netloc_ip = f"[{ip}]" if ":" in ip else ip
        pinned = urlunsplit(
            (parts.scheme, f"{netloc_ip}:{port}", parts.path or "/", parts.query, "")
        )
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return pinned, host_header

    async def deliver(
        self, url: str, touch_id: UUID, payload: Mapping[str, Any], *, event: str
    ) -> Outcome:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        try:
            target, host_header = await self.resolve(url)
        except RefusedDestination as exc:
            return Failed(f"destination refused: {exc}")
        except OSError as exc:
            return Retry(f"resolve failed: {exc}")
        timestamp = int(time.time())
        headers = {
            "Host": host_header,
            "Content-Type": "application/json",
            "Idempotency-Key": str(touch_id),
            "X-Funnel-Event": event,
            "X-Funnel-Timestamp": str(timestamp),
            "X-Funnel-Signature": signature(self.secret, timestamp, body),
            "User-Agent": "funnel-notifier",
        }
        sni = urlsplit(url).hostname or ""
        try:
            response = await self._http.get().post(
                target, content=body, headers=headers, extensions={"sni_hostname": sni}
            )
        except httpx.HTTPError as exc:
            return Retry(f"webhook call failed: {type(exc).__name__}")
        if 200 <= response.status_code < 300:
            return Sent()
        error = f"webhook answered {response.status_code}"
        if is_permanent(response.status_code) or 300 <= response.status_code < 400:
            # 4xx: the request itself is wrong. 3xx: redirects are not followed (SSRF).
            return Failed(error)
        return Retry(error, delay_s=retry_after_seconds(response.headers.get("retry-after")))
