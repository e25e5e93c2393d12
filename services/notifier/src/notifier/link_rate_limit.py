"""A per-IP rate limit on the public links (unsubscribe, open pixel, click redirect).

Sliding-window counters in process memory, through the kit's rate limiter, as lead-intake
does for its public endpoints (docs/decisions: intake rate limits, notifier link rate
limits). The limit is generous: mail providers fetch pixels and follow links through a few
shared proxy addresses, so it blunts floods without dropping real people's opens.
"""

from __future__ import annotations

from fastapi import Request

from funnel_servicekit.deps import runtime_of
from notifier.runtime import NotifierRuntime


async def limit_link_requests(request: Request) -> None:
    """FastAPI dependency: one hit for the caller's IP (uvicorn applies trusted proxies)."""
    runtime: NotifierRuntime = runtime_of(request)
    context = runtime.context
    client = request.client.host if request.client else "unknown"
    await context.link_limiter.check(context.link_limit, "link", client, what="client")
