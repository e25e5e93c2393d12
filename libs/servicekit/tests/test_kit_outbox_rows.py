"""An outbox row made in one step (`OutboxRows.add_json`) is the row the usual way gives (an
`Envelope`, `funnel_contracts.encode`, the headers column as `enqueue_many` writes it), column
for column and byte for byte; and event ids are random version-4 UUIDs as `uuid4` writes them.
(Pure: no database; the rows' writing is exercised by the tracker's integration tests.)"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from funnel_contracts import Envelope, decode, encode
from funnel_contracts.envelope import json_text
from funnel_servicekit import event_ids, outbox

AT = datetime(2026, 12, 6, 13, 45, 1, 250_000, tzinfo=UTC)


class _Clock:
    """`datetime` as the outbox module sees it, its `now` fixed."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self, tz: object = None) -> datetime:
        assert tz is UTC
        return self.at


def _usual(
    event_type: str,
    topic: str,
    subject: str,
    data: dict[str, object],
    *,
    source: str,
    event_id: str,
    trace_headers: dict[str, str],
    at: datetime,
) -> tuple[str, bytes, bytes, str, str]:
    envelope = Envelope(
        type=event_type, source=source, subject=subject, data=data, id=event_id, time=at,
        trace=trace_headers,
    )  # fmt: skip
    record = outbox.OutboxRecord(topic, envelope, encode(envelope))
    rows = outbox.OutboxRows()
    rows.add(record)
    [row] = zip(rows.topics, rows.keys, rows.values, rows.headers, rows.types, strict=True)
    # What enqueue_many wrote before OutboxRows: the headers column as json.dumps' text.
    assert row[3] == json.dumps([[k, v.decode()] for k, v in record.record.headers])
    return row


def _one_step(
    monkeypatch: pytest.MonkeyPatch,
    event_type: str,
    topic: str,
    subject: str,
    value: bytes,
    *,
    source: str,
    event_id: str | None,
    trace_headers: dict[str, str] | None,
    at: datetime,
) -> tuple[tuple[str, bytes, bytes, str, str], str]:
    monkeypatch.setattr(outbox, "datetime", _Clock(at))
    rows = outbox.OutboxRows()
    made = rows.add_json(
        event_type, topic, subject, value, source=source, trace=trace_headers, event_id=event_id
    )
    assert len(rows) == 1
    [row] = zip(rows.topics, rows.keys, rows.values, rows.headers, rows.types, strict=True)
    return row, made


def test_a_row_in_one_step_is_the_usual_row(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"lead_id": str(uuid.uuid4()), "score": 12.5, "owner": None}
    value = json_text(data).encode()
    parent = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-00", "tracestate": "k=v"}
    for at in (AT, AT.replace(microsecond=0)):  # isoformat drops zero microseconds
        row, event_id = _one_step(
            monkeypatch, "funnel.lead.scored.v1", "funnel.stage-events", data["lead_id"], value,
            source="stage-tracker", event_id=None, trace_headers=parent, at=at,
        )  # fmt: skip
        expected = _usual(
            "funnel.lead.scored.v1", "funnel.stage-events", data["lead_id"], data,
            source="stage-tracker", event_id=event_id, trace_headers=parent, at=at,
        )  # fmt: skip
        assert row == expected
        # And it is a CloudEvent the consumers read back as written.
        headers = [(k, v.encode()) for k, v in json.loads(row[3])]
        envelope = decode(row[1], row[2], headers)
        assert (envelope.id, envelope.time, envelope.data) == (event_id, at, data)
        assert envelope.trace == parent


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    event_type=_TEXT,
    source=_TEXT,
    subject=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    event_id=_TEXT,
    trace_headers=st.dictionaries(
        st.sampled_from(["traceparent", "tracestate", "baggage", "x-other"]), _TEXT, max_size=4
    ),
    seconds=st.integers(0, 10**9),
    micros=st.sampled_from([0, 1, 999_999, 250_000]),
)
def test_any_strings_give_the_usual_row(
    event_type: str,
    source: str,
    subject: str,
    event_id: str,
    trace_headers: dict[str, str],
    seconds: int,
    micros: int,
) -> None:
    at = datetime(1995, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)
    data = {"text": subject}
    with pytest.MonkeyPatch.context() as monkeypatch:
        row, made = _one_step(
            monkeypatch, event_type, "topic", subject, json_text(data).encode(), source=source,
            event_id=event_id, trace_headers=trace_headers, at=at,
        )  # fmt: skip
    assert made == event_id
    assert row == _usual(
        event_type, "topic", subject, data, source=source, event_id=event_id,
        trace_headers=trace_headers, at=at,
    )  # fmt: skip


def test_empty_attributes_are_refused_as_encode_refuses_them() -> None:
    rows = outbox.OutboxRows()
    with pytest.raises(ValueError, match="must not be empty"):
        rows.add_json("", "t", "s", b"{}", source="x", trace={})
    with pytest.raises(ValueError, match="must not be empty"):
        rows.add_json("t", "t", "s", b"{}", source="", trace={})
    assert len(rows) == 0


def test_without_trace_headers_a_producer_span_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(outbox, "_tracer", provider.get_tracer("test"))
    rows = outbox.OutboxRows()
    event_id = rows.add_json("funnel.x.v1", "topic", "s", b"{}", source="src")
    [span] = exported.get_finished_spans()
    assert span.name == "outbox funnel.x.v1"
    assert span.kind is trace.SpanKind.PRODUCER
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == event_id
    carried = dict(json.loads(rows.headers[0]))
    context = trace.get_current_span(propagate.extract(carried)).get_span_context()
    assert (context.trace_id, context.span_id) == (span.context.trace_id, span.context.span_id)


def test_event_ids_are_version_4_uuids_as_uuid4_writes_them() -> None:
    ids = [event_ids.new_event_id() for _ in range(5000)]  # more than one read of the pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # Every bit that is not version or variant varies (random, not a counter).
    values = [uuid.UUID(t).int for t in ids]
    fixed = (0xF << 76) | (0xC000 << 48)
    varying = 0
    for v in values:
        varying |= v ^ values[0]
    assert varying == ((1 << 128) - 1) & ~fixed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_does_not_repeat_its_parent_s_ids() -> None:
    event_ids.new_event_id()  # the pool holds ids the parent has not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "\n".join(event_ids.new_event_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    parent = [event_ids.new_event_id() for _ in range(10)]
    with os.fdopen(read) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    assert len(child) == 10
    assert not set(child) & set(parent)
