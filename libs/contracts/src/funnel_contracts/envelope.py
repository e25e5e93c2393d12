"""The CloudEvents 1.0 envelope over Kafka, binary content mode.

Attributes travel as `ce_*` headers, the W3C trace context as `traceparent`/`tracestate`
headers, the record key is the lead id and the value is the event data as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

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
    def of(cls, event: EventData, *, source: str, event_id: str | None = None) -> Envelope:
        """Wrap a typed event; the subject (and record key) is its lead id."""
        return cls(
            type=event.event_type,
            source=source,
            subject=str(event.lead_id),
            data=event.model_dump(mode="json"),
            id=event_id or str(uuid4()),
        )


def encode(envelope: Envelope) -> KafkaRecord:
    """Encode an envelope as a Kafka record in CloudEvents binary mode."""
    event = CloudEvent(
        attributes={
            "id": envelope.id,
            "source": envelope.source,
            "type": envelope.type,
            "specversion": "1.0",
            "time": envelope.time,
            "subject": envelope.subject,
            "datacontenttype": JSON_CONTENT_TYPE,
        },
        data=envelope.data,
    )
    message = ce_kafka.to_binary_event(event, key_mapper=lambda _e: envelope.subject)
    headers = list(message.headers.items())
    headers += [(k, v.encode()) for k, v in envelope.trace.items() if k in TRACE_HEADERS]
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return KafkaRecord(key=key, value=message.value, headers=headers)


def decode(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> Envelope:
    """Decode a Kafka record; DecodeError for anything that is not one of our events."""
    try:
        header_map = dict(headers)
        if not any(h.startswith("ce_") for h in header_map):
            raise DecodeError("no ce_* headers: not a binary-mode CloudEvent")
        if value is None:
            raise DecodeError("empty record value")
        message = ce_kafka.KafkaMessage(headers=header_map, key=key, value=value)
        event = ce_kafka.from_binary_event(message)
        data = event.get_data()
        if isinstance(data, bytes | str):
            data = json.loads(data)
        if not isinstance(data, dict):
            raise DecodeError("event data is not a JSON object")
        attributes = event.get_attributes()
        for required in ("id", "source", "type", "subject", "time"):
            if not attributes.get(required):
                raise DecodeError(f"missing CloudEvents attribute {required!r}")
        time = attributes["time"]
        if not isinstance(time, datetime):
            raise DecodeError("ce_time is not a timestamp")
        trace = {h: header_map[h].decode() for h in TRACE_HEADERS if h in header_map}
        return Envelope(
            type=str(attributes["type"]),
            source=str(attributes["source"]),
            subject=str(attributes["subject"]),
            data=data,
            id=str(attributes["id"]),
            time=time,
            trace=trace,
        )
    except DecodeError:
        raise
    except Exception as exc:  # anything the binding or JSON parser throws is poison
        raise DecodeError(f"{type(exc).__name__}: {exc}") from exc
