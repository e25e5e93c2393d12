"""A per-IP rate limit on the public links (unsubscribe, open pixel, click redirect).

Sliding-window counters from the `limits` library in process memory, as lead-intake does for
its public endpoints (docs/decisions: intake rate limits, notifier link rate limits). The
limit is generous: mail providers fetch pixels and follow links through a few shared proxy
addresses, so it blunts floods without dropping real people's opens.
"""

from __future__ import annotations

import math
import time

from fastapi import Request
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from funnel_servicekit.problems import Problem

UNLIMITED = "unlimited"


class LinkRateLimit:
    """Counts public-link hits per client IP against one limit (`300/minute`, `unlimited`)."""

    def __init__(self, spec: str) -> None:
        self._item = None if spec == UNLIMITED else parse(spec)
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def check(self, client_ip: str | None) -> None:
        """Count one hit; a Problem 429 with Retry-After when the IP is over its limit."""
        if self._item is None:
            return
        key = client_ip or "unknown"
        if await self._limiter.hit(self._item, "link", key):
            return
        stats = await self._limiter.get_window_stats(self._item, "link", key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise Problem(
            429,
            "Too many requests",
            f"this client is over its limit of {self._item}; retry in {retry_after}s",
            type_="urn:funnel:problem:rate-limited",
            errors=[{"field": "rate", "message": f"client limit {self._item}"}],
            headers={"Retry-After": str(retry_after)},
        )


async def limit_link_requests(request: Request) -> None:
    """FastAPI dependency: one hit for the caller's IP (uvicorn applies trusted proxies)."""
    runtime = request.app.state.runtime
    limiter = runtime.state.get("link_rate_limit")
    if limiter is None:
        limiter = runtime.state["link_rate_limit"] = LinkRateLimit(
            runtime.settings.tracking_rate_limit_per_ip
        )
    await limiter.check(request.client.host if request.client else None)
