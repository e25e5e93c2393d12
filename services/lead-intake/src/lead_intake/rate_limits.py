"""Rate limits on the public endpoints: per client IP and per form (429 with Retry-After).

Sliding-window counters from the `limits` library, kept in process memory (see
docs/decisions on intake rate limits: each replica counts on its own).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from funnel_servicekit.problems import Problem
from lead_intake.forms import UNLIMITED, Form


class RateLimits:
    """Counts hits per (form, IP) and per form against the form's or the default limits."""

    def __init__(self, default_per_ip: str, default_per_form: str) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._defaults = (default_per_ip, default_per_form)
        self._parsed: dict[str, RateLimitItem] = {}

    def _item(self, spec: str | None, default: str) -> RateLimitItem | None:
        spec = spec or default
        if spec == UNLIMITED:
            return None
        item = self._parsed.get(spec)
        if item is None:
            item = self._parsed[spec] = parse(spec)
        return item

    async def check(self, form: Form, client_ip: str | None, *, scope: str = "post") -> None:
        """Count one hit; a Problem 429 when the IP or the form is over its limit."""
        per_ip = self._item(form.settings.rate_limit_per_ip, self._defaults[0])
        per_form = self._item(form.settings.rate_limit_per_form, self._defaults[1])
        checks = [
            (per_ip, ("ip", scope, form.id, client_ip or "unknown"), "client"),
            (per_form, ("form", scope, form.id), "form"),
        ]
        for item, keys, what in checks:
            if item is None:
                continue
            if not await self._limiter.hit(item, *keys):
                stats = await self._limiter.get_window_stats(item, *keys)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                raise Problem(
                    429,
                    "Too many requests",
                    f"this {what} is over its limit of {item}; retry in {retry_after}s",
                    type_="urn:funnel:problem:rate-limited",
                    errors=[{"field": "rate", "message": f"{what} limit {item}"}],
                    headers={"Retry-After": str(retry_after)},
                )
