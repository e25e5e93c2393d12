"""Spans are recorded only where they can be exported; the trace context flows either way."""

from __future__ import annotations

import os

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import use_span

from funnel_servicekit.telemetry import make_provider

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def _child_of_remote_parent(provider: TracerProvider) -> tuple[bool, dict[str, str]]:
    """(recording?, the headers an outbox row would carry) for a span under PARENT."""
    tracer = provider.get_tracer("test")
    span = tracer.start_span("consume", context=propagate.extract({"traceparent": PARENT}))
    with use_span(span, end_on_exit=True):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        recording = span.is_recording()
    return recording, carrier


def test_without_an_exporter_nothing_is_recorded_but_the_trace_id_flows() -> None:
    provider = make_provider("svc", None, {})
    recording, headers = _child_of_remote_parent(provider)
    assert not recording
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "00")
    assert span_id != "b7ad6b7169203331"  # a span of its own, for the log lines


def test_a_root_span_without_an_exporter_still_gets_ids_for_the_logs() -> None:
    span = make_provider("svc", None, {}).get_tracer("test").start_span("root")
    assert not span.is_recording()
    assert span.get_span_context().is_valid


def test_with_an_exporter_every_span_is_recorded_and_exported() -> None:
    exported = InMemorySpanExporter()
    provider = make_provider("svc", exported, {})
    recording, headers = _child_of_remote_parent(provider)
    assert recording
    assert headers["traceparent"].split("-")[1] == TRACE_ID
    assert headers["traceparent"].endswith("-01")
    provider.force_flush()
    names = [s.name for s in exported.get_finished_spans()]
    assert "consume" in names
    assert {s.context.trace_id for s in exported.get_finished_spans()} == {int(TRACE_ID, 16)}


def test_the_standard_sampler_setting_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    recording, headers = _child_of_remote_parent(
        make_provider("svc", InMemorySpanExporter(), os.environ)
    )
    assert not recording  # an SRE sampling down an exporting service
    assert headers["traceparent"].split("-")[1] == TRACE_ID
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    recording, _ = _child_of_remote_parent(make_provider("svc", None, os.environ))
    assert recording  # asked for explicitly, even with nowhere to export
