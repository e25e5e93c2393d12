"""Rate limits on the public endpoints: per client IP and per form (429 with Retry-After).

The kit's token buckets in this service's schema (docs/decisions/0042): every replica counts
in the same rows, and a restart forgets nothing. A form's own limits win over the service
defaults. Form posts and activity beacons count per (form, IP) and per form; webhooks per
(platform, form, source address) and per (platform, form), before their signature is checked
(so guessing keys is limited too, the same for a form that does not exist).
"""

from __future__ import annotations

import asyncpg
from limits import RateLimitItem

from funnel_servicekit.rate_limit import RateLimiter, parse_limit


class PublicRateLimits:
    """Counts hits per (form, IP) and per form against the form's or the default limits."""

    def __init__(
        self,
        default_per_ip: str,
        default_per_form: str,
        webhook_per_ip: str = "unlimited",
        webhook_per_form: str = "unlimited",
    ) -> None:
        self._limiter = RateLimiter()
        self._defaults = (default_per_ip, default_per_form)
        self._webhooks = (parse_limit(webhook_per_ip), parse_limit(webhook_per_form))
        self._parsed: dict[str, RateLimitItem | None] = {}

    def _item(self, spec: str | None, default: str) -> RateLimitItem | None:
        spec = spec or default
        if spec not in self._parsed:
            self._parsed[spec] = parse_limit(spec)
        return self._parsed[spec]

    async def check(
        self,
        pool: asyncpg.Pool,
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
            pool, ip_limit, "ip", scope, form_id, client_ip or "unknown", what="client"
        )
        await self._limiter.check(pool, form_limit, "form", scope, form_id, what="form")

    async def check_webhook(
        self, pool: asyncpg.Pool, platform: str, form_id: str, client_ip: str | None
    ) -> None:
        """One delivery to a webhook (whether the form exists or not: nothing is looked up)."""
        per_ip, per_form = self._webhooks
        await self._limiter.check(
            pool, per_ip, "webhook-ip", platform, form_id, client_ip or "unknown", what="client"
        )
        await self._limiter.check(pool, per_form, "webhook-form", platform, form_id, what="form")
