"""Leak events (topic funnel.report-events), emitted by reporting: a step-to-step conversion of
a funnel dropped significantly below its own trailing baseline, and its recovery.

A leak is about a funnel, not a person: `lead_id` (the record key every event has) holds the
leak's id, the same as `leak_id`, so every record of one leak lands on one partition in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from funnel_contracts import topics
from funnel_contracts.events.base import EventData


class LeakDetected(EventData):
    """A step's conversion dropped below its baseline (a one-sided two-proportion z-test)."""

    event_type: ClassVar[str] = "funnel.leak.detected.v1"
    topic: ClassVar[str] = topics.REPORT_EVENTS

    leak_id: UUID = Field(description="The leak; also in lead_id, the record key.")
    funnel_id: str
    from_stage: str
    to_stage: str
    segment: str = Field(description='"all", or "<breakdown>:<value>" such as "source:google"')
    window_days: int = Field(ge=1, description="Conversion counted within this many days.")
    baseline_rate: float = Field(ge=0, le=1)
    baseline_entered: int = Field(ge=0)
    baseline_converted: int | None = Field(default=None, ge=0)
    current_rate: float = Field(ge=0, le=1)
    current_entered: int = Field(ge=0)
    current_converted: int | None = Field(default=None, ge=0)
    p_value: float = Field(ge=0, le=1)
    detected_at: datetime


class LeakResolved(EventData):
    """A leak's step recovered: its conversion is no longer significantly below the baseline
    the leak was opened against."""

    event_type: ClassVar[str] = "funnel.leak.resolved.v1"
    topic: ClassVar[str] = topics.REPORT_EVENTS

    leak_id: UUID = Field(description="The leak; also in lead_id, the record key.")
    funnel_id: str
    from_stage: str
    to_stage: str
    segment: str
    baseline_rate: float = Field(ge=0, le=1)
    current_rate: float = Field(ge=0, le=1)
    p_value: float = Field(ge=0, le=1)
    resolved_at: datetime
