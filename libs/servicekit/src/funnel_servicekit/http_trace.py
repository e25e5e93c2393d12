"""W3C trace context through a request when no span is recorded (a pure ASGI middleware).

With spans recorded (an exporter set), OpenTelemetry's FastAPI instrumentation makes one
server span per request. Without one, the instrumentation still made a span object per
request that nobody would read, after decoding every header, the URL and the route into its
attributes: a large share of a small request's work. This middleware does what remains of it
then: the request runs under an unrecorded span whose context is the one that span would have
had (the caller's trace id, a new span id, not sampled, the caller's tracestate; a new trace
without a valid `traceparent`), so what the request writes (outbox rows, Kafka headers, log
lines) carries the same trace context (`libs/servicekit/tests/test_kit_http_trace.py` holds
it equal to the instrumentation's).
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

from funnel_servicekit.telemetry import UnrecordedParent

_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


class UnrecordedTraceMiddleware:
    """Each HTTP request under an unrecorded span continuing the caller's trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            _TRACE_HEADERS[name]: value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        parent = UnrecordedParent.of(carrier)
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=parent.trace_id,
                span_id=parent.ids.generate_span_id(),
                is_remote=False,
                trace_flags=trace.TraceFlags(parent.flags),
                trace_state=trace.TraceState.from_header([parent.state]) if parent.state else None,
            )
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
