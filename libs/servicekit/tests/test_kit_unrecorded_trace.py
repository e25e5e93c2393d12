"""A hot loop that records no span passes each event's trace on as the unrecorded spans would:
`unrecorded_child_headers` against the SDK's own consume span and outbox span under it."""

from __future__ import annotations

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, use_span

from funnel_servicekit.telemetry import make_provider, spans_recorded, unrecorded_child_headers

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENTS = [
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},  # sampled upstream
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-00"},  # not sampled upstream
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-03"},  # random trace id flag
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01", "tracestate": "vendor=a,other=b"},
]


def _through_spans(provider: TracerProvider, parent: dict[str, str]) -> dict[str, str]:
    """What an outbox row written in an outbox span, inside a consume span, carries."""
    tracer = provider.get_tracer("test")
    consume = tracer.start_span(
        "consume", context=propagate.extract(parent), kind=SpanKind.CONSUMER
    )
    carrier: dict[str, str] = {}
    with (
        use_span(consume, end_on_exit=True),
        tracer.start_as_current_span("outbox", kind=SpanKind.PRODUCER),
    ):
        propagate.inject(carrier)
    return carrier


def _parts(headers: dict[str, str]) -> tuple[str, str, str, str | None]:
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert len(span_id) == 16
    assert int(span_id, 16) != 0
    return version, trace_id, flags, headers.get("tracestate")


@pytest.mark.parametrize("parent", PARENTS)
def test_the_headers_are_those_of_the_unrecorded_spans(parent: dict[str, str]) -> None:
    provider = make_provider("svc", None, {})  # no exporter: ALWAYS_OFF
    spans = _through_spans(provider, parent)
    fast = unrecorded_child_headers(parent)
    assert set(fast) == set(spans)
    assert _parts(fast) == _parts(spans)
    assert _parts(fast)[1] == TRACE_ID  # the event's trace goes on
    assert fast["traceparent"].split("-")[2] != parent["traceparent"].split("-")[2]


def test_every_call_is_a_span_of_its_own() -> None:
    spans = {unrecorded_child_headers(PARENTS[0])["traceparent"] for _ in range(50)}
    assert len(spans) == 50


def test_without_a_parent_a_new_trace_begins_as_an_unrecorded_root_would() -> None:
    provider = make_provider("svc", None, {})
    spans = _through_spans(provider, {})
    fast = unrecorded_child_headers({})
    assert _parts(fast)[0] == _parts(spans)[0] == "00"
    assert _parts(fast)[2] == _parts(spans)[2]  # flags: not sampled, random trace id
    assert _parts(fast)[1] != _parts(spans)[1]  # each a new trace
    assert int(_parts(fast)[1], 16) != 0


def test_spans_are_skipped_only_when_the_provider_records_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    def installed(provider: trace.TracerProvider) -> bool:
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
        return spans_recorded()

    assert not installed(make_provider("svc", None, {}))  # ours without an exporter
    assert installed(make_provider("svc", InMemorySpanExporter(), {}))
    assert installed(make_provider("svc", None, {"OTEL_TRACES_SAMPLER": "always_on"}))
    assert installed(trace.NoOpTracerProvider())  # not ours: spans as usual
