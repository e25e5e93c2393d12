"""Outgoing webhooks (pure): the signature, which destinations are allowed, when to retry.

Signature: `X-Funnel-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with the
timestamp in `X-Funnel-Timestamp`, so a receiver can refuse old or replayed deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: str, timestamp: int, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), header)


class RefusedDestination(ValueError):
    """A webhook URL the notifier may not call (not allowed, or an internal address)."""


def check_host(url: str, allowed_hosts: Sequence[str]) -> str:
    """The URL's host if it is on the allow-list (exact, or `*.example.com` for subdomains)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise RefusedDestination("only http(s) URLs with a host")
    if parts.username or parts.password:
        raise RefusedDestination("credentials in the URL are not allowed")
    for pattern in (p.lower() for p in allowed_hosts):
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return host
    raise RefusedDestination(f"host {host} is not on the webhook allow-list")


def check_addresses(addresses: Iterable[str], allow_private: bool) -> None:
    """Refuse loopback, private, link-local and other non-public addresses (no SSRF)."""
    for raw in addresses:
        ip = ipaddress.ip_address(raw)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not ip.is_global and not allow_private:
            raise RefusedDestination(f"{ip} is not a public address")
        if ip.is_multicast or ip.is_unspecified:
            raise RefusedDestination(f"{ip} cannot be called")


def is_permanent(status: int) -> bool:
    """A 4xx says "this request is wrong": retrying will not help (except 408 and 429)."""
    return 400 <= status < 500 and status not in (408, 425, 429)


def retry_after_seconds(header: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
