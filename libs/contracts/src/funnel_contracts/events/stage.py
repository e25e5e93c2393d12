"""Stage events (topic funnel.stage-events), emitted by stage-tracker."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from funnel_contracts import topics
from funnel_contracts.events.base import EventData

Temperature = Literal["cold", "warm", "hot"]


class StageChanged(EventData):
    """A lead moved from one funnel stage to another (from_stage is null on entry)."""

    event_type: ClassVar[str] = "funnel.stage.changed.v1"
    topic: ClassVar[str] = topics.STAGE_EVENTS

    funnel_id: str
    funnel_version: int = Field(ge=1)
    from_stage: str | None
    to_stage: str
    to_stage_position: int = Field(ge=0, description="Position of to_stage in the funnel.")
    reason: str
    cause_event_id: str | None = None
    cause_event_type: str | None = None
    changed_at: datetime
    actor: str | None = Field(default=None, description="Who moved it by hand, if a person.")


class LeadScored(EventData):
    """A lead's score changed; `temperature` crossing to hot is what sales waits for."""

    event_type: ClassVar[str] = "funnel.lead.scored.v1"
    topic: ClassVar[str] = topics.STAGE_EVENTS

    funnel_id: str
    score: float
    fit_score: float
    engagement_score: float
    temperature: Temperature
    previous_temperature: Temperature | None = None
    cause_event_id: str | None = None
    scored_at: datetime
