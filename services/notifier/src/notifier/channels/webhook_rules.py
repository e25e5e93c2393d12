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
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise RefusedDestination("the URL's port is not a valid port") from exc
    for pattern in (p.lower() for p in allowed_hosts):
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return host
    raise RefusedDestination(f"host {host} is not on the webhook allow-list")


# IPv6 prefixes whose last 32 bits are an IPv4 address that a gateway (NAT64, or an old
# IPv4-compatible stack) may reach: 64:ff9b::7f00:1 can be 127.0.0.1 behind NAT64, yet
# Python calls it global.
_EMBEDS_IPV4 = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96")
)


def _inner_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64...), if any."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in net for net in _EMBEDS_IPV4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_addresses(addresses: Iterable[str], allow_private: bool) -> None:
    """Refuse loopback, private, link-local and other non-public addresses (no SSRF), also
    when they hide inside an IPv6 address (mapped, 6to4, Teredo, NAT64, IPv4-compatible)."""
    for raw in addresses:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(raw)
        if ip.is_multicast or ip.is_unspecified:
            raise RefusedDestination(f"{ip} cannot be called")
        if allow_private:
            continue
        inner = _inner_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        for candidate in (ip, inner):
            if candidate is not None and (not candidate.is_global or candidate.is_multicast):
                raise RefusedDestination(f"{ip} is not a public address")


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
