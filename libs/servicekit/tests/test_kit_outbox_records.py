"""A chunk of events encoded for the outbox under one producer span (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from funnel_contracts import LeadMerged, decode
from funnel_servicekit import outbox


def test_a_chunk_has_one_producer_span_whose_context_every_event_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    monkeypatch.setattr(outbox, "_tracer", tracer)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    events = [
        LeadMerged(lead_id=uuid4(), merged_lead_id=uuid4(), reason="manual", merged_at=at)
        for _ in range(3)
    ]

    with tracer.start_as_current_span("import batch") as batch:
        records = outbox.outbox_records(events, source="lead-intake")

    spans = {s.name: s for s in exported.get_finished_spans()}
    producer = spans["outbox funnel.lead.merged.v1"]
    assert len(spans) == 2  # the batch's and one producer span, not one per event
    assert producer.kind is trace.SpanKind.PRODUCER
    assert producer.parent is not None
    assert producer.parent.span_id == batch.get_span_context().span_id
    assert producer.attributes is not None
    assert producer.attributes["messaging.batch.message_count"] == 3
    assert producer.attributes["messaging.destination.name"] == "funnel.lead-events"
    for event, record in zip(events, records, strict=True):
        headers = dict(record.record.headers)
        carried = propagate.extract({"traceparent": headers["traceparent"].decode()})
        context = trace.get_current_span(carried).get_span_context()
        assert (context.trace_id, context.span_id) == (
            producer.context.trace_id,
            producer.context.span_id,
        )
        decoded = decode(record.record.key, record.record.value, record.record.headers)
        assert (decoded.type, decoded.data) == (event.event_type, event.model_dump(mode="json"))
    assert len({r.envelope.id for r in records}) == 3
    assert outbox.outbox_records([], source="lead-intake") == []


def test_with_no_span_recorded_an_event_carries_its_child_context_without_a_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that records no span writes the producer span's headers directly: the
    current trace, a new span id, not sampled; no span object is made."""

    class NoSpans:
        def start_as_current_span(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("a span was made although none is recorded")

    monkeypatch.setattr(outbox, "spans_recorded", lambda: False)
    monkeypatch.setattr(outbox, "_tracer", NoSpans())
    parent = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=trace.TraceFlags(0),
    )
    event = LeadMerged(
        lead_id=uuid4(), merged_lead_id=uuid4(), reason="manual", merged_at=datetime.now(UTC)
    )
    with trace.use_span(trace.NonRecordingSpan(parent)):
        record = outbox.outbox_record(event, source="lead-intake")
    version, trace_id, span_id, flags = record.envelope.trace["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "00")
    assert span_id not in ("b7ad6b7169203331", "0" * 16)
    assert decode(record.record.key, record.record.value, list(record.record.headers)).trace == (
        record.envelope.trace
    )
