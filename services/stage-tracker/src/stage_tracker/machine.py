"""The stage state machine: given a lead's current stage and an event, the move to make (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from funnel_contracts import EventData, LeadCaptured
from stage_tracker.funnels import funnel_by_id


@dataclass(frozen=True)
class CurrentStage:
    funnel_id: str
    funnel_version: int
    stage: str


@dataclass(frozen=True)
class Move:
    funnel_id: str
    funnel_version: int
    from_stage: str | None
    to_stage: str
    to_position: int
    reason: str
    occurred_at: datetime


def decide(current: CurrentStage | None, event: EventData) -> Move | None:
    """The move an event causes, or None when it changes nothing."""
    if isinstance(event, LeadCaptured):
        if current is not None:
            return None  # already in the funnel; a second capture is not a move
        funnel = funnel_by_id(event.funnel_id)
        return Move(
            funnel.id, funnel.version, None, funnel.entry_stage, 0, "captured", event.captured_at
        )
    return None
