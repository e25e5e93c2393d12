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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, get_args
from uuid import uuid4

from pydantic import BaseModel, ValidationError

from funnel_contracts.events import EVENT_MODELS, EventData, SchemaError, parse_event

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
        content_type: str | None = None
        for name, raw in header_map.items():
            text = raw.decode()  # every header must be UTF-8, as the SDK requires
            lowered = name.lower()
            if lowered.startswith("ce_"):
                attributes[lowered[3:]] = text
            elif lowered == "content-type":
                # Of `content-type` and `Content-Type`, the later one counts, as the SDK
                # reads them: an empty one before a filled one is not refused.
                content_type = text
        if content_type == "":
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


# -- a consumer's decode: the record's bytes straight into the event's model ----------------

# The header names, in order, of every record `encode` writes (and the outbox relays send):
# the CloudEvents attributes, the content type, then the trace headers it carries, if any.
_OURS = ("ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject", "content-type")
_OUR_SHAPES = frozenset(
    {
        _OURS,
        (*_OURS, "traceparent"),
        (*_OURS, "tracestate"),
        (*_OURS, "traceparent", "tracestate"),
        (*_OURS, "tracestate", "traceparent"),
    }
)


class ReceivedEnvelope(Envelope):
    """An envelope read by `decode_event`: its data stays the record's JSON bytes until it is
    read (the event's model was validated from those bytes, without a dict in between).

    Equal to an `Envelope` with the same attributes and data; `dataclasses.replace` gives a
    `ReceivedEnvelope` holding the data it was given."""

    @property
    def data(self) -> dict[str, Any]:
        found = self.__dict__.get("_data")
        if found is None:
            found = json.loads(self.__dict__["_raw"])
            self.__dict__["_data"] = found
        return found  # type: ignore[no-any-return]

    @data.setter
    def data(self, value: dict[str, Any]) -> None:  # Envelope.__init__, through replace()
        self.__dict__["_data"] = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return (self.type, self.source, self.subject, self.id, self.time, self.trace) == (
            other.type,
            other.source,
            other.subject,
            other.id,
            other.time,
            other.trace,
        ) and self.data == other.data

    __hash__ = None  # type: ignore[assignment]


def _holds_decimal(annotation: Any, seen: set[type]) -> bool:
    if annotation is Decimal:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return False
        seen.add(annotation)
        return any(_holds_decimal(f.annotation, seen) for f in annotation.model_fields.values())
    return any(_holds_decimal(arg, seen) for arg in get_args(annotation))


# Per model, its Decimal fields (None: one is inside a nested value). A decimal read from a
# JSON number keeps the number's digits when the model reads the bytes ("1.10") but not when
# it reads the float json.loads made (1.1): an event with such a value takes the general way.
_DECIMALS: dict[type[EventData], tuple[str, ...] | None] = {}


def _decimal_fields(model: type[EventData]) -> tuple[str, ...] | None:
    if model not in _DECIMALS:
        top: list[str] = []
        nested = False
        for name, info in model.model_fields.items():
            if info.annotation is Decimal or Decimal in get_args(info.annotation):
                top.append(name)
            elif _holds_decimal(info.annotation, set()):
                nested = True
        _DECIMALS[model] = None if nested else tuple(top)
    return _DECIMALS[model]


def _received(
    attributes: tuple[str, str, str, str, datetime],
    raw: bytes,
    trace: dict[str, str],
) -> ReceivedEnvelope:
    envelope = object.__new__(ReceivedEnvelope)
    event_type, source, subject, event_id, time = attributes
    envelope.__dict__.update(
        type=event_type, source=source, subject=subject, id=event_id, time=time, trace=trace,
        _raw=raw,
    )  # fmt: skip
    return envelope


def _our_attributes(
    value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> tuple[tuple[str, str, str, str, datetime], dict[str, str]] | None:
    """The attributes and trace of a record in the exact shape `encode` writes, checked as
    `decode` checks them; None for any other record (or one `decode` would refuse), which
    then takes `decode`'s own path."""
    if value is None or tuple([name for name, _ in headers]) not in _OUR_SHAPES:
        return None
    try:
        texts = [raw.decode() for _, raw in headers]
    except (UnicodeDecodeError, AttributeError):  # not UTF-8, or a header without a value
        return None
    event_id, source, event_type, specversion, at, subject, content_type = texts[:7]
    if not (event_id and source and event_type and at and subject and content_type):
        return None
    if specversion != SPECVERSION:
        return None
    try:
        time = datetime.fromisoformat(at)
    except ValueError:
        return None
    if time.tzinfo is None:
        return None
    trace: dict[str, str] = {}
    if len(texts) > 7:
        found = {headers[i][0]: texts[i] for i in range(7, len(texts))}
        trace = {h: found[h] for h in TRACE_HEADERS if h in found}
    return (event_type, source, subject, event_id, time), trace


def _handled_type(headers: Sequence[tuple[str, bytes]], handled: Collection[str]) -> bool:
    if len(headers) < len(_OURS) or headers[2][0] != "ce_type":
        return False
    try:
        return headers[2][1].decode() in handled
    except (UnicodeDecodeError, AttributeError):  # not UTF-8, or a header without a value
        return False


def decode_event(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    handled: Collection[str],
) -> tuple[Envelope, EventData | None]:
    """A consumer's `decode` and `parse_event` in one: the record's envelope and, when its
    type is in `handled`, its event (None for a type some contract knows but the consumer
    does not handle).

    Raises what `decode` then `parse_event` raise for the same record: DecodeError (not one
    of our events), SchemaError (a type no contract knows, or data its model refuses). A
    record in the shape `encode` writes, of a handled type, is validated from its bytes by
    the model (`model_validate_json`: no dict, the headers read in one pass); whatever that
    refuses is read again the general way, so the verdict and the error are `decode`'s and
    `parse_event`'s (libs/contracts/tests/test_decode_event.py holds them equal).
    """
    # A type not handled (our shape puts it third) goes the general way at once: its data
    # is only checked to be a JSON object there, and its headers are read once.
    ours = _our_attributes(value, headers) if _handled_type(headers, handled) else None
    if ours is not None and value is not None:
        attributes, trace = ours
        model = EVENT_MODELS.get(attributes[0]) if attributes[0] in handled else None
        decimals = _decimal_fields(model) if model is not None else None
        if model is not None and decimals is not None:
            try:
                event = model.model_validate_json(value)
            except ValidationError:
                pass  # refused or malformed: the general way says how
            else:
                if not any(getattr(event, name) is not None for name in decimals):
                    return _received(attributes, value, trace), event
    envelope = decode(key, value, list(headers))
    if envelope.type not in handled:
        if envelope.type not in EVENT_MODELS:
            # No contract knows it: a producer's bug, not an event meant for others.
            raise SchemaError(f"unknown event type {envelope.type[:200]!r}")
        return envelope, None
    return envelope, parse_event(envelope.type, envelope.data)
