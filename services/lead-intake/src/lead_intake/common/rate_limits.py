"""Rate limits on the public endpoints: per client IP and per form (429 with Retry-After).

The kit's sliding-window `RateLimiter`, kept in process memory (docs/decisions/0005: each
replica counts on its own). A form's own limits win over the service defaults.
"""

from __future__ import annotations

from limits import RateLimitItem

from funnel_servicekit.rate_limit import RateLimiter, parse_limit


class PublicRateLimits:
    """Counts hits per (form, IP) and per form against the form's or the default limits."""

    def __init__(self, default_per_ip: str, default_per_form: str) -> None:
        self._limiter = RateLimiter()
        self._defaults = (default_per_ip, default_per_form)
        self._parsed: dict[str, RateLimitItem | None] = {}

    def _item(self, spec: str | None, default: str) -> RateLimitItem | None:
        spec = spec or default
        if spec not in self._parsed:
            self._parsed[spec] = parse_limit(spec)
        return self._parsed[spec]

    async def check(
        self,
        form_id: str,
        client_ip: str | None,
        *,
        per_ip: str | None,
        per_form: str | None,
        scope: str = "post",
    ) -> None:
        """Count one hit; the 429 Problem when the IP or the form is over its limit."""
        ip_limit = self._item(per_ip, self._defaults[0])
        form_limit = self._item(per_form, self._defaults[1])
        await self._limiter.check(
            ip_limit, "ip", scope, form_id, client_ip or "unknown", what="client"
        )
        await self._limiter.check(form_limit, "form", scope, form_id, what="form")
