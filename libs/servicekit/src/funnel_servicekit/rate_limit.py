"""Rate limits on public endpoints: sliding-window counters from the `limits` library, and
the one 429 answer (problem+json with Retry-After) when a caller is over its limit.

Counts live in process memory (each replica counts its own callers).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from funnel_servicekit.problems import rate_limited

UNLIMITED = "unlimited"


def parse_limit(spec: str | None) -> RateLimitItem | None:
    """`300/minute` as a limit; None (no limit) for `unlimited` or nothing."""
    return None if spec is None or spec == UNLIMITED else parse(spec)


class RateLimiter:
    """Counts hits per key against limits; refuses with a 429 Problem past a limit."""

    def __init__(self) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def check(self, item: RateLimitItem | None, *keys: str, what: str) -> None:
        """Count one hit for `keys`; raise the 429 Problem when they are over `item`.

        `what` names the caller in the answer ("client", "form").
        """
        if item is None:
            return
        if await self._limiter.hit(item, *keys):
            return
        stats = await self._limiter.get_window_stats(item, *keys)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise rate_limited(what, item, retry_after)
