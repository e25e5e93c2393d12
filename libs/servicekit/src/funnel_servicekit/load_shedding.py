"""Load shedding: past a number of requests in flight, answer 503 with Retry-After at once.

A server that queues every request it cannot serve yet makes all of them slow: under an
open-loop load above its capacity, the queue (and every answer's latency) grows without bound.
Refusing the excess immediately keeps the accepted requests fast and tells clients when to
come back. The probes and the scrape are never refused, so an overloaded pod stays visible.
An event stream (`text/event-stream`) holds its slot until it started: its work after that
is per event, not per request, and it may stay open for hours.
"""

from __future__ import annotations

import json

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel_servicekit.live import is_event_stream

SHED = Counter("funnel_http_shed_total", "Requests refused with 503 while overloaded", ["method"])
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_BODY = json.dumps(
    {
        "type": "urn:funnel:problem:overloaded",
        "title": "Overloaded",
        "status": 503,
        "detail": "too many requests in progress; retry after the given seconds",
    }
).encode()


class LoadSheddingMiddleware:
    """Refuses a request with 503 when `max_in_flight` requests are being served already."""

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_seconds: int = 1) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(_BODY)).encode()),
            (b"retry-after", str(retry_after_seconds).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            SHED.labels(scope.get("method", "GET")).inc()
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": _BODY})
            return
        self.in_flight += 1
        released = False

        async def send_and_release(message: Message) -> None:
            # The slot is free once the answer is complete, before the client can send its
            # next request on the connection (the handler's unwinding may run after that).
            nonlocal released
            if not released and (
                (message["type"] == "http.response.body" and not message.get("more_body", False))
                or (
                    message["type"] == "http.response.start"
                    and is_event_stream(message.get("headers", []))
                )
            ):
                released = True
                self.in_flight -= 1
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            if not released:
                self.in_flight -= 1
