"""OpenTelemetry: one tracer provider per process, W3C trace context in and out of Kafka.

Spans are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set, or to an exporter a test passes
in; then they are all recorded, unless OTEL_TRACES_SAMPLER says otherwise (the SDK's standard
sampler settings). With no exporter, nothing would ever read a span, so none is recorded
(about a fifth of the tracker's throughput): the trace context still flows through HTTP,
the outbox and Kafka headers (as not sampled), and log lines still carry trace and span ids.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_provider: TracerProvider | None = None


def setup_tracing(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install the process-wide tracer provider once; later calls return the same one."""
    global _provider
    if _provider is not None:
        return _provider
    _provider = make_provider(service_name, exporter, os.environ)
    trace.set_tracer_provider(_provider)
    return _provider


def make_provider(
    service_name: str, exporter: SpanExporter | None, env: Mapping[str, str]
) -> TracerProvider:
    """A tracer provider for `env`: exporting (and recording) spans only where they can go."""
    if exporter is None and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads its endpoint and headers from the environment
    sampler = None  # the SDK's default: OTEL_TRACES_SAMPLER, else parent-based, always on
    if exporter is None and not env.get("OTEL_TRACES_SAMPLER"):
        sampler = ALWAYS_OFF
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=sampler
    )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_trace_headers() -> dict[str, str]:
    """The current context as W3C headers (traceparent, tracestate), for an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def spans_recorded() -> bool:
    """False when the process's tracer provider records no span at all (ours without an
    exporter: ALWAYS_OFF). A hot loop may then skip making spans and pass each event's trace
    on with `unrecorded_child_headers`, which writes the same headers those spans would."""
    provider = trace.get_tracer_provider()
    return not (isinstance(provider, TracerProvider) and provider.sampler is ALWAYS_OFF)


_RANDOM_IDS = RandomIdGenerator()
# A traceparent as every service here writes it (version 00, nothing after the flags): the
# W3C propagator reads it to the same trace id and flags.
_PLAIN_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _plain_traceparent(parent: Mapping[str, str]) -> tuple[int, int] | None:
    """(trace id, flags) of a plain, valid traceparent without tracestate, read without the
    propagators (a tenth of their cost), when they are the default W3C ones; None: let them
    read it (anything else, including no traceparent at all)."""
    if len(parent) != 1 or not _default_propagation():
        return None
    header = parent.get("traceparent")
    match = None if header is None else _PLAIN_TRACEPARENT.fullmatch(header)
    if match is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return None  # invalid: the propagators start a new trace
    return trace_id, int(match[3], 16)


def _default_propagation() -> bool:
    """Whether the process propagates W3C trace context and baggage, as the SDK does by
    default (OTEL_PROPAGATORS unset)."""
    textmap = propagate.get_global_textmap()
    kinds = [type(p) for p in getattr(textmap, "_propagators", ())]
    return type(textmap) is CompositePropagator and kinds == [
        TraceContextTextMapPropagator,
        W3CBaggagePropagator,
    ]


def unrecorded_child_headers(parent: Mapping[str, str]) -> dict[str, str]:
    """The trace headers that a span started under `parent` (a record's trace headers) puts on
    what it sends when the sampler drops it: the parent's trace id (a new one without a valid
    parent), a new span id, not sampled, the parent's random-trace-id flag and tracestate.

    The same as `current_trace_headers()` inside unrecorded spans (the consume span and an
    outbox span under it) at a fraction of the cost: no span objects, no context switches.
    Written as W3C trace context, the only trace headers an envelope carries.
    """
    return UnrecordedParent.of(parent).child_headers()


@dataclass(frozen=True)
class UnrecordedParent:
    """An event's trace headers read once (the unrecorded consume span's trace), for every
    event emitted while it is applied: `child_headers()` each, as `unrecorded_child_headers`
    does, without parsing the parent again. Without a valid parent, the consume span would
    have begun one new trace for all it emits: so does this."""

    trace_id: int
    flags: int  # W3C trace flags: not sampled, with or without the random-trace-id bit
    state: str
    ids: IdGenerator

    @classmethod
    def of(cls, parent: Mapping[str, str]) -> UnrecordedParent:
        provider = trace.get_tracer_provider()
        ids: IdGenerator = _RANDOM_IDS
        if isinstance(provider, TracerProvider):
            ids = provider.id_generator
        plain = _plain_traceparent(parent)
        if plain is not None:
            return cls(plain[0], plain[1] & trace.TraceFlags.RANDOM_TRACE_ID, "", ids)
        remote = trace.get_current_span(propagate.extract(dict(parent))).get_span_context()
        if remote.is_valid:
            trace_id, random_id = remote.trace_id, remote.trace_flags.random_trace_id
            state = remote.trace_state.to_header() if remote.trace_state else ""
        else:
            trace_id, random_id, state = ids.generate_trace_id(), ids.is_trace_id_random(), ""
        flags = trace.TraceFlags.RANDOM_TRACE_ID if random_id else trace.TraceFlags.DEFAULT
        return cls(trace_id, int(flags), state, ids)

    def child_headers(self) -> dict[str, str]:
        """A new unrecorded span's headers under this parent (a new span id each call)."""
        headers = {
            "traceparent": f"00-{self.trace_id:032x}-{self.ids.generate_span_id():016x}"
            f"-{self.flags:02x}"
        }
        if self.state:
            headers["tracestate"] = self.state
        return headers


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context:
    """The remote parent context carried by a Kafka record's trace headers."""
    return propagate.extract(dict(headers))


def current_trace_id() -> str | None:
    """Hex trace id of the current span, for log lines; None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def current_span_id() -> str | None:
    """Hex span id of the current span, for log lines; None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.span_id, "016x") if span_context.is_valid else None
