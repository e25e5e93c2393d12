"""A hot loop that records no span passes each event's trace on as the unrecorded spans would:
`unrecorded_child_headers` against the SDK's own consume span and outbox span under it."""

from __future__ import annotations

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, use_span

from funnel_servicekit.telemetry import (
    UnrecordedParent,
    make_provider,
    spans_recorded,
    unrecorded_child_headers,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENTS = [
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},  # sampled upstream
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-00"},  # not sampled upstream
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-03"},  # random trace id flag
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01", "tracestate": "vendor=a,other=b"},
]
# Read by the propagators themselves, not the plain-traceparent shortcut: each must come out
# as the SDK's spans make it (a new trace where the header is not valid).
ODD_PARENTS = [
    {"traceparent": f" 00-{TRACE_ID}-b7ad6b7169203331-01 "},  # blanks around it
    {"traceparent": f"00-{TRACE_ID.upper()}-b7ad6b7169203331-01"},  # not lower-case hex
    {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"},  # the invalid trace id
    {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},  # the invalid span id
    {"traceparent": f"ff-{TRACE_ID}-b7ad6b7169203331-01"},  # a forbidden version
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01-extra"},  # version 00 with more
    {"traceparent": f"01-{TRACE_ID}-b7ad6b7169203331-03-extra"},  # a later version may
    {"traceparent": "garbage"},
    {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01", "baggage": "k=v"},
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


def _same_trace(fast: dict[str, str], spans: dict[str, str], parent: dict[str, str]) -> None:
    assert set(fast) == set(spans)
    f, s = _parts(fast), _parts(spans)
    assert (f[0], f[2], f[3]) == (s[0], s[2], s[3])
    # The SDK continues a valid parent's trace (twice the same) and begins a new one otherwise.
    again = _parts(_through_spans(make_provider("svc", None, {}), parent))[1]
    if again == s[1]:
        assert f[1] == s[1]  # the parent's trace goes on
    else:
        assert f[1] != s[1]  # each a new trace, as each consume span would begin


@pytest.mark.parametrize("parent", PARENTS + ODD_PARENTS)
def test_a_parent_read_once_gives_the_unrecorded_spans_headers(parent: dict[str, str]) -> None:
    provider = make_provider("svc", None, {})
    read = UnrecordedParent.of(parent)
    _same_trace(read.child_headers(), _through_spans(provider, parent), parent)
    _same_trace(unrecorded_child_headers(parent), _through_spans(provider, parent), parent)


@pytest.mark.parametrize("parent", [PARENTS[0], PARENTS[3], {}, {"traceparent": "garbage"}])
def test_what_one_event_emits_shares_its_trace_each_with_a_span_of_its_own(
    parent: dict[str, str],
) -> None:
    """Several outbox spans under one consume span: one trace, as many span ids."""
    read = UnrecordedParent.of(parent)
    children = [_parts(read.child_headers()) for _ in range(20)]
    assert len({c[1] for c in children}) == 1
    assert int(children[0][1], 16) != 0
    spans = {read.child_headers()["traceparent"].split("-")[2] for _ in range(20)}
    assert len(spans) == 20
