"""The CloudEvents binary-mode envelope: what goes on the wire and what is refused."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from funnel_contracts import DecodeError, Envelope, LeadCaptured, decode, encode, parse_event
from funnel_contracts.events import SchemaError


def _lead() -> LeadCaptured:
    return LeadCaptured(
        lead_id=uuid4(),
        submission_id=uuid4(),
        form_id="demo",
        funnel_id="digital-sales",
        email="ada@example.com",
        captured_at=datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
    )


def test_encode_puts_attributes_in_ce_headers_and_keys_by_lead() -> None:
    event = _lead()
    env = Envelope.of(event, source="lead-intake")
    env = Envelope(
        **{**env.__dict__, "trace": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}}
    )
    record = encode(env)
    headers = dict(record.headers)
    assert record.key == str(event.lead_id).encode()
    assert headers["ce_type"] == b"funnel.lead.captured.v1"
    assert headers["ce_source"] == b"lead-intake"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_subject"] == str(event.lead_id).encode()
    assert headers["ce_id"] == env.id.encode()
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"].startswith(b"00-aaaa")
    assert (
        b'"email": "ada@example.com"' in record.value
        or b'"email":"ada@example.com"' in record.value
    )


def test_decode_round_trips_and_parses_the_model() -> None:
    event = _lead()
    env = Envelope.of(event, source="lead-intake")
    back = decode(*_wire(encode(env)))
    assert back.id == env.id
    assert back.type == env.type
    assert back.subject == str(event.lead_id)
    assert parse_event(back.type, back.data) == event


def _wire(record):  # type: ignore[no-untyped-def]
    return record.key, record.value, record.headers


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (b'{"a": 1}', []),
        (
            b"not json",
            [
                ("ce_id", b"1"),
                ("ce_type", b"t"),
                ("ce_source", b"s"),
                ("ce_specversion", b"1.0"),
                ("ce_subject", b"x"),
                ("ce_time", b"2026-01-01T00:00:00Z"),
                ("content-type", b"application/json"),
            ],
        ),
        (b"{}", [("ce_id", b"\xff\xfe"), ("ce_type", b"t"), ("ce_specversion", b"1.0")]),
        (
            b"{}",
            [
                ("ce_id", b"1"),
                ("ce_type", b"t"),
                ("ce_source", b"s"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
        ),
        (
            b"[1, 2]",
            [
                ("ce_id", b"1"),
                ("ce_type", b"t"),
                ("ce_source", b"s"),
                ("ce_specversion", b"1.0"),
                ("ce_subject", b"x"),
                ("ce_time", b"2026-01-01T00:00:00Z"),
                ("content-type", b"application/json"),
            ],
        ),
    ],
    ids=["no-ce-headers", "not-json", "non-utf8-header", "missing-subject-and-time", "json-array"],
)
def test_decode_refuses_poison(value: bytes, headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(DecodeError):
        decode(b"k", value, headers)


def test_parse_event_refuses_unknown_types_and_bad_data() -> None:
    with pytest.raises(SchemaError, match="unknown event type"):
        parse_event("funnel.nope.v1", {})
    with pytest.raises(SchemaError, match="lead_id"):
        parse_event("funnel.lead.captured.v1", {"email": "x"})
