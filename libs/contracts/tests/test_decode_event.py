"""`decode_event`, a consumer's decode: the record's bytes straight into the event's model.

It must give what `decode` then `parse_event` give for every record (the same envelope, the
same event, the same error class and text), while reading a record in our producers' shape
without `json.loads` (no dict in between) and its headers in one pass.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel_contracts import (
    DecodeError,
    Envelope,
    EventData,
    ReceivedEnvelope,
    SchemaError,
    decode,
    decode_event,
    encode,
    parse_event,
)
from funnel_contracts import envelope as envelope_module
from funnel_contracts.events import EVENT_MODELS

GOLDEN = Path(__file__).parent / "golden"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
Headers = list[tuple[str, bytes]]


def reference(
    key: bytes | None, value: bytes | None, headers: Headers, handled: set[str]
) -> tuple[Any, ...]:
    """What the inbox did before `decode_event`: `decode`, then `parse_event` if handled."""
    try:
        envelope = decode(key, value, list(headers))
        if envelope.type not in handled:
            if envelope.type not in EVENT_MODELS:
                raise SchemaError(f"unknown event type {envelope.type[:200]!r}")
            return ("ignored", _envelope_key(envelope), None)
        event = parse_event(envelope.type, envelope.data)
        return ("event", _envelope_key(envelope), _event_key(event))
    except (DecodeError, SchemaError) as exc:
        return (type(exc), str(exc))


def ours(
    key: bytes | None, value: bytes | None, headers: Headers, handled: set[str]
) -> tuple[Any, ...]:
    try:
        envelope, event = decode_event(key, value, tuple(headers), handled)
    except (DecodeError, SchemaError) as exc:
        return (type(exc), str(exc))
    if event is None:
        return ("ignored", _envelope_key(envelope), None)
    return ("event", _envelope_key(envelope), _event_key(event))


def _envelope_key(e: Envelope) -> tuple[Any, ...]:
    # The data as JSON text: NaN is not equal to itself, its text is.
    data = json.dumps(e.data)
    return (e.type, e.source, e.subject, e.id, e.time, e.trace, data)


def _event_key(event: EventData) -> tuple[Any, ...]:
    # The type, every value as the model writes it (Decimal("1.10") == Decimal("1.1"), but
    # not as text) and the repr (a str is not a UUID). `json.dumps` of the JSON-mode dump,
    # not `model_dump_json`: a lone surrogate (read from a "\ud800" escape) has no UTF-8,
    # and the comparison must not fail where both decoders agree.
    return (type(event), json.dumps(event.model_dump(mode="json")), repr(event))


def golden(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{event_type}.json").read_text())
    return data


def record_of(event_type: str, data: dict[str, Any], trace: dict[str, str] | None = None):
    envelope = Envelope(
        type=event_type,
        source="lead-intake",
        subject=str(data.get("lead_id", "x")),
        data=data,
        time=datetime(2026, 12, 6, 16, 0, 0, 123456, tzinfo=UTC),
        trace=trace if trace is not None else {"traceparent": TRACEPARENT},
    )
    return encode(envelope)


# fmt: off
SCALAR_TEXTS = [
    "7d0c2a8e-8a53-4c5e-9a53-0d8f0a1e2b3c", "2026-11-03T12:00:00Z", "2026-11-03", "1.10",
    "form", "email", "awareness", "", "true", "1", "\ud800",
]
STYLES = [
    "plain", "compact", "unicode", "indent", "duplicate", "bom", "utf16", "trailing",
    "bad-utf8", "array", "nan", "empty", "surrogate-escape",
]
TRACES: list[dict[str, str]] = [
    {}, {"traceparent": TRACEPARENT}, {"tracestate": "v=1"},
    {"traceparent": TRACEPARENT, "tracestate": "v=1"},
]
# fmt: on

TYPES = sorted(EVENT_MODELS)


@pytest.mark.parametrize("event_type", TYPES)
def test_every_golden_event_reads_as_decode_and_parse_event_read_it(event_type: str) -> None:
    record = record_of(event_type, golden(event_type))
    for handled in ({event_type}, set(), set(EVENT_MODELS)):
        got = ours(record.key, record.value, record.headers, handled)
        assert got == reference(record.key, record.value, record.headers, handled)
        assert got[0] == ("event" if event_type in handled else "ignored")


@pytest.mark.parametrize("trace", TRACES)
def test_a_record_in_our_shape_is_read_without_json_loads(monkeypatch, trace) -> None:
    """The fast way, for every header shape `encode` writes: no dict of the data is made
    (json.loads is never called) until the envelope's data is read; then it is the record's
    data."""
    data = golden("funnel.stage.changed.v1")
    record = record_of("funnel.stage.changed.v1", data, trace)
    calls: list[bytes] = []
    real_loads = json.loads

    def counting_loads(raw: Any, **kw: Any) -> Any:
        calls.append(raw)
        return real_loads(raw, **kw)

    monkeypatch.setattr(envelope_module.json, "loads", counting_loads)
    envelope, event = decode_event(
        record.key, record.value, record.headers, {"funnel.stage.changed.v1"}
    )
    assert calls == []
    assert isinstance(envelope, ReceivedEnvelope)
    assert event == parse_event("funnel.stage.changed.v1", data)
    assert envelope.trace == trace
    assert envelope.data == data  # read now, once
    assert calls == [record.value]
    assert envelope.data == data
    assert len(calls) == 1


def test_a_lone_surrogate_in_a_handled_event_reads_as_decode_and_parse_event_read_it() -> None:
    """A "\\ud800" escape (valid JSON, no UTF-8) in a string field of a handled event: both
    decoders give the same event, and the comparison itself must not fail on it (hypothesis
    found this once, in the test's own comparison)."""
    data = {**golden("funnel.consent.changed.v1"), "source": "LONE-SURROGATE"}
    record = record_of("funnel.consent.changed.v1", data)
    value = record.value.replace(b"LONE-SURROGATE", b"\\ud800")
    handled = {"funnel.consent.changed.v1"}
    got = ours(record.key, value, record.headers, handled)
    assert got == reference(record.key, value, record.headers, handled)
    assert got[0] == "event"
    assert '"source": "\\ud800"' in got[2][1]


def test_a_received_envelope_equals_the_decoded_one_and_can_be_replaced() -> None:
    data = golden("funnel.lead.captured.v1")
    record = record_of("funnel.lead.captured.v1", data)
    received, _ = decode_event(record.key, record.value, record.headers, {record_type(record)})
    decoded = decode(record.key, record.value, record.headers)
    assert isinstance(received, ReceivedEnvelope)
    assert received == decoded
    assert decoded == received
    assert received != dataclasses.replace(decoded, id="other")
    changed = dataclasses.replace(received, data={"a": 1})
    assert changed.data == {"a": 1}
    assert changed.id == decoded.id
    assert repr(received).startswith("ReceivedEnvelope(type='funnel.lead.captured.v1'")


def record_type(record: Any) -> str:
    return dict(record.headers)["ce_type"].decode()


@pytest.mark.parametrize("amount", [b"12.30", b"0.30000000000000001", b'"12.30"', b"null"])
def test_a_decimal_reads_as_parse_event_reads_it(amount: bytes) -> None:
    """A decimal sent as a JSON number keeps its digits only through the model's own JSON
    reading: such an event takes the general way, so the amount is what it always was."""
    data = golden("funnel.activity.recorded.v1")
    record = record_of("funnel.activity.recorded.v1", data)
    value = record.value.replace(b'"amount": "49.90"', b'"amount": ' + amount)
    assert value != record.value
    handled = {"funnel.activity.recorded.v1"}
    got = ours(record.key, value, record.headers, handled)
    assert got == reference(record.key, value, record.headers, handled)
    _, event = decode_event(record.key, value, record.headers, handled)
    expected = parse_event("funnel.activity.recorded.v1", json.loads(value))
    assert str(event.amount) == str(expected.amount)  # type: ignore[union-attr]
    if amount == b"12.30":
        assert event.amount == Decimal("12.3")  # type: ignore[union-attr]


# -- arbitrary changes to the value and the headers: the same verdict, the same reading -------

text = st.text(max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | text
    | st.sampled_from(SCALAR_TEXTS)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def values(draw: st.DrawFn, event_type: str) -> bytes:
    data = golden(event_type)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*data, "extra", "lead_id"]) if data else st.just("x"))
        if draw(st.booleans()):
            data[name] = draw(json_values)
        else:
            data.pop(name, None)
    style = draw(st.sampled_from(STYLES))
    plain = json.dumps(data)
    match style:
        case "plain":
            return plain.encode()
        case "compact":
            return json.dumps(data, separators=(",", ":")).encode()
        case "unicode":
            return json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
        case "indent":
            return json.dumps(data, indent=2).encode()
        case "duplicate":
            first = draw(st.sampled_from([*data, "lead_id"]))
            head = "{" + json.dumps(first) + ": " + json.dumps(draw(json_values))
            return (head + (", " + plain[1:] if len(plain) > 2 else "}")).encode()
        case "bom":
            return b"\xef\xbb\xbf" + plain.encode()
        case "utf16":
            return plain.encode("utf-16")
        case "trailing":
            return plain.encode() + draw(st.sampled_from([b" ", b"\n", b"x", b"{}", b","]))
        case "bad-utf8":
            return plain.encode()[:-1] + b'"\xff"}' if plain.endswith("}") else b"\xff"
        case "array":
            return b"[" + plain.encode() + b"]"
        case "nan":
            return plain[:-1].encode() + b', "nan": NaN, "inf": -Infinity}'
        case "empty":
            return draw(st.sampled_from([b"", b"null", b"{}", b"   ", b'"x"', b"1"]))
        case _:
            return plain[:-1].encode() + b', "s": "\\udc80\\ud800x"}'


HEADER_NAMES = st.sampled_from(
    ["ce_id", "ce_source", "ce_type", "ce_subject", "ce_time", "ce_specversion",
     "content-type", "traceparent", "tracestate", "CE_TYPE", "ce_foo", "ce_dataschema",
     "other"]
)  # fmt: skip
HEADER_VALUES = st.sampled_from(
    [None, b"", b"1.0", b"0.3", b"x", b"\xff\xfe", b"application/json", b"2026-11-27T02:22:15Z",
     b"2026-11-27T02:22:15", b"2026-11-27", b"yesterday", b"funnel.lead.captured.v1",
     b"funnel.nope.v1", TRACEPARENT.encode(), b"vendor=1"]
)  # fmt: skip


@st.composite
def header_changes(draw: st.DrawFn, headers: Headers) -> Headers:
    headers = list(headers)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["drop", "set", "replace", "swap"]))
        if kind == "drop" and headers:
            del headers[draw(st.integers(0, len(headers) - 1))]
        elif kind == "set":
            headers.append((draw(HEADER_NAMES), draw(HEADER_VALUES)))
        elif kind == "replace" and headers:
            i = draw(st.integers(0, len(headers) - 1))
            headers[i] = (headers[i][0], draw(HEADER_VALUES))
        elif kind == "swap" and len(headers) > 1:
            i, j = draw(st.integers(0, len(headers) - 1)), draw(st.integers(0, len(headers) - 1))
            headers[i], headers[j] = headers[j], headers[i]
    return headers


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, bytes | None, Headers, set[str]]:
    event_type = draw(st.sampled_from(TYPES))
    trace = draw(st.sampled_from(TRACES))
    record = record_of(event_type, golden(event_type), trace)
    value: bytes | None = draw(values(event_type))
    if draw(st.integers(0, 20)) == 0:
        value = None
    headers = draw(header_changes(record.headers)) if draw(st.booleans()) else record.headers
    handled = draw(st.sampled_from([{event_type}, set(), set(EVENT_MODELS)]))
    return record.key, value, headers, handled


@settings(max_examples=1500, deadline=None)
@given(records())
def test_any_record_reads_as_decode_and_parse_event_read_it(
    record: tuple[bytes, bytes | None, Headers, set[str]],
) -> None:
    key, value, headers, handled = record
    assert ours(key, value, headers, handled) == reference(key, value, headers, handled)


@pytest.mark.parametrize("index", [0, 2, 4, 7])
def test_a_header_without_a_value_is_poison_as_decode_says(index: int) -> None:
    """Kafka headers may carry no value (None): `decode` calls that poison, and so does
    `decode_event`, whichever header it is (the type's included)."""
    record = record_of("funnel.stage.changed.v1", golden("funnel.stage.changed.v1"))
    headers: list[Any] = list(record.headers)
    headers[index] = (headers[index][0], None)
    handled = {"funnel.stage.changed.v1"}
    got = ours(record.key, record.value, headers, handled)
    assert got == reference(record.key, record.value, headers, handled)
    assert got[0] is DecodeError
