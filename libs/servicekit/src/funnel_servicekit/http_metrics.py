"""HTTP rate and latency metrics as a pure ASGI middleware (no per-request task or buffering)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel_servicekit import metrics
from funnel_servicekit.live import is_event_stream


class HttpMetricsMiddleware:
    """Counts requests by route template and status, and observes their latency (an event
    stream's until it started: the time it stays open is the client's, not the server's)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        answered_at: float | None = None

        async def send_and_record(message: Message) -> None:
            nonlocal status, answered_at
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if is_event_stream(message.get("headers", [])):
                    answered_at = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            metrics.HTTP_REQUESTS.labels(method, path, str(status)).inc()
            ended = answered_at if answered_at is not None else time.perf_counter()
            metrics.HTTP_LATENCY.labels(method, path).observe(ended - started)
