"""Funnel's event contracts, shared by every service: envelope, event models, topics."""

from funnel_contracts.envelope import DecodeError, Envelope, KafkaRecord, decode, encode
from funnel_contracts.events import (
    EVENT_MODELS,
    EventData,
    LeadCaptured,
    SchemaError,
    StageChanged,
    TouchSent,
    Utm,
    parse_event,
)
from funnel_contracts.topics import ALL_TOPICS, dead_letter_topic

__all__ = [
    "ALL_TOPICS",
    "EVENT_MODELS",
    "DecodeError",
    "Envelope",
    "EventData",
    "KafkaRecord",
    "LeadCaptured",
    "SchemaError",
    "StageChanged",
    "TouchSent",
    "Utm",
    "dead_letter_topic",
    "decode",
    "encode",
    "parse_event",
]
