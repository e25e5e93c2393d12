"""The CloudEvents 1.0 envelope over Kafka, binary content mode.

Attributes travel as `ce_*` headers, the W3C trace context as `traceparent`/`tracestate`
headers, the record key is the lead id and the value is the event data as JSON.

The binding is written here rather than through the CloudEvents SDK, which cost about a
quarter of a consumer's CPU per event (attribute validation, dateutil's parser, format
dispatch); tests/ hold these bytes equal to the SDK's, header for header, and the decoder to
the SDK's verdict on what is a valid event (docs/decisions/0018-binary-mode-codec.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any
from uuid import uuid4

from funnel_contracts.events import EventData

TRACE_HEADERS = ("traceparent", "tracestate")
JSON_CONTENT_TYPE = "application/json"


class DecodeError(ValueError):
    """A Kafka record that is not a well-formed CloudEvent of ours (a poison message)."""


@dataclass(frozen=True)
class KafkaRecord:
    """What goes on the wire: key, value and headers of one Kafka record."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Envelope:
    """One event with its CloudEvents attributes and trace context."""

    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    trace: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        event: EventData,
        *,
        source: str,
        event_id: str | None = None,
        trace: dict[str, str] | None = None,
    ) -> Envelope:
        """Wrap a typed event; the subject (and record key) is its lead id."""
        return cls(
            type=event.event_type,
            source=source,
            subject=str(event.lead_id),
            data=event.model_dump(mode="json"),
            id=event_id or str(uuid4()),
            trace=trace or {},
        )


SPECVERSION = "1.0"
_REQUIRED = ("id", "source", "type", "subject", "time")
# Context attributes the spec defines; any other ce_* header is an extension attribute.
_SPEC_ATTRIBUTES = frozenset(
    {"id", "source", "type", "specversion", "datacontenttype", "dataschema", "subject", "time"}
)
_EXTENSION_NAME = re.compile(r"[a-z0-9]+")


def _timestamp(time: datetime) -> bytes:
    """RFC 3339 as the CloudEvents SDK writes it: isoformat, with "Z" for UTC."""
    if time.tzinfo is None:
        raise ValueError("ce_time must be timezone aware")
    text = time.isoformat()
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text.encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _timestamp(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# json.dumps' defaults (", " and ": ", ASCII escapes), made once rather than per call.
_JSON = json.JSONEncoder(default=_json_default)
# The same encoder's C core, made once too (JSONEncoder.encode builds one per call); the data
# of an event holds no cycles, so no circular-reference markers. Python's own where there is
# no C core.
_C_ENCODER = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _json_default, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
)


def json_text(data: Any) -> str:
    """`data` as json.dumps writes it by default (what `encode` puts in a record's value)."""
    if _C_ENCODER is None:
        return _JSON.encode(data)
    return "".join(_C_ENCODER(data, 0))


def encode(envelope: Envelope, *, value: bytes | None = None) -> KafkaRecord:
    """Encode an envelope as a Kafka record in CloudEvents binary mode.

    `value`: the data already encoded, by a hot path that builds it directly; it must be the
    bytes `json_text(envelope.data)` would give (its caller's tests hold them equal)."""
    for name in ("id", "source", "type"):
        if not getattr(envelope, name):
            raise ValueError(f"CloudEvents attribute {name!r} must not be empty")
    subject = envelope.subject.encode()
    headers = [
        ("ce_id", envelope.id.encode()),
        ("ce_source", envelope.source.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_specversion", b"1.0"),
        ("ce_time", _timestamp(envelope.time)),
        ("ce_subject", subject),
        ("content-type", b"application/json"),
    ]
    headers += [(k, v.encode()) for k, v in envelope.trace.items() if k in TRACE_HEADERS]
    if value is None:
        value = json_text(envelope.data).encode()
    return KafkaRecord(key=subject, value=value, headers=headers)


def decode(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> Envelope:
    """Decode a Kafka record; DecodeError for anything that is not one of our events."""
    try:
        header_map = dict(headers)
        attributes: dict[str, str] = {}
        for name, raw in header_map.items():
            text = raw.decode()  # every header must be UTF-8, as the SDK requires
            lowered = name.lower()
            if lowered.startswith("ce_"):
                attributes[lowered[3:]] = text
            elif lowered == "content-type" and not text:
                raise DecodeError("empty content-type header")
        if not attributes:
            raise DecodeError("no ce_* headers: not a binary-mode CloudEvent")
        if value is None:
            raise DecodeError("empty record value")
        if attributes.get("specversion") != SPECVERSION:
            raise DecodeError(f"ce_specversion must be {SPECVERSION!r}")
        for name in attributes.keys() - _SPEC_ATTRIBUTES:
            if name == "data" or not _EXTENSION_NAME.fullmatch(name):
                raise DecodeError(f"invalid extension attribute name {name[:50]!r}")
        if attributes.get("dataschema") == "":
            raise DecodeError("empty ce_dataschema")
        for required in _REQUIRED:
            if not attributes.get(required):
                raise DecodeError(f"missing CloudEvents attribute {required!r}")
        try:
            time = datetime.fromisoformat(attributes["time"])
        except ValueError:
            raise DecodeError("ce_time is not a timestamp") from None
        if time.tzinfo is None:
            raise DecodeError("ce_time must be timezone aware")
        data = json.loads(value) if value else None
        if not isinstance(data, dict):
            raise DecodeError("event data is not a JSON object")
        trace = {h: header_map[h].decode() for h in TRACE_HEADERS if h in header_map}
        return Envelope(
            type=attributes["type"],
            source=attributes["source"],
            subject=attributes["subject"],
            data=data,
            id=attributes["id"],
            time=time,
            trace=trace,
        )
    except DecodeError:
        raise
    except Exception as exc:  # a bad header encoding or JSON value is poison
        raise DecodeError(f"{type(exc).__name__}: {exc}") from exc
