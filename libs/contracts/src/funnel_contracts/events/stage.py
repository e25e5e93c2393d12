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
    owner: str | None = Field(default=None, description="The lead's owner (a key's name), if any.")


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
    owner: str | None = Field(default=None, description="The lead's owner (a key's name), if any.")


class StageMoveRequested(EventData):
    """A move stage-tracker was asked to make by a person or its stall timer (its input log).

    stage-tracker writes it when it makes such a move and reads it back only to rebuild by
    replay: these moves are caused by no other event, so without it a replay would lose them.
    """

    event_type: ClassVar[str] = "funnel.stage.move-requested.v1"
    topic: ClassVar[str] = topics.STAGE_COMMANDS

    funnel_id: str
    kind: Literal["manual", "stall_timer"] = Field(
        description="manual: a person's move (to_stage, reason, actor); stall_timer: the timer "
        "fired at requested_at (stalled or lost, as the lead's funnel says)."
    )
    to_stage: str | None = None
    reason: str | None = None
    actor: str | None = Field(default=None, description="Who moved it by hand, if a person.")
    funnel_version: int | None = Field(
        default=None, ge=1, description="A manual move to this (newer) version of the funnel."
    )
    requested_at: datetime = Field(description="The clock of the request: what the move uses.")


class LeadOwnerChanged(EventData):
    """A person took a lead over, handed it to a colleague, or released it (owner None)."""

    event_type: ClassVar[str] = "funnel.lead.owner-changed.v1"
    topic: ClassVar[str] = topics.STAGE_EVENTS

    funnel_id: str
    owner: str | None = Field(description="The new owner (an API key's name); None: released.")
    previous_owner: str | None = None
    actor: str = Field(description="The name of the key that made the change.")
    changed_at: datetime


class OwnerAssigned(EventData):
    """stage-tracker's input log for owner changes (like StageMoveRequested for moves): read
    back only by a rebuild, so that owners survive it."""

    event_type: ClassVar[str] = "funnel.lead.owner-assigned.v1"
    topic: ClassVar[str] = topics.STAGE_COMMANDS

    funnel_id: str
    owner: str | None
    actor: str
    requested_at: datetime
