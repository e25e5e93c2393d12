"""notifier's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItem

from funnel_servicekit.rate_limit import RateLimiter, parse_limit
from funnel_servicekit.runtime import ServiceRuntime
from notifier.settings import NotifierSettings


@dataclass(frozen=True)
class NotifierContext:
    """Counts of public-link hits per client IP (unsubscribe, open pixel, click redirect)."""

    link_limiter: RateLimiter
    link_limit: RateLimitItem | None

    @classmethod
    def of(cls, settings: NotifierSettings) -> NotifierContext:
        return cls(RateLimiter(), parse_limit(settings.tracking_rate_limit_per_ip))


NotifierRuntime = ServiceRuntime[NotifierSettings, NotifierContext]
