"""Which touch an event calls for (pure). The walking skeleton knows one: the welcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from funnel_contracts import EventData, StageChanged


@dataclass(frozen=True)
class TouchPlan:
    playbook: str
    channel: str
    template: str
    delay: timedelta


WELCOME = TouchPlan("welcome", "email", "welcome", timedelta(0))


def plan_for(event: EventData) -> TouchPlan | None:
    """A lead entering its funnel's first stage gets the welcome email right away."""
    if (
        isinstance(event, StageChanged)
        and event.from_stage is None
        and event.to_stage_position == 0
    ):
        return WELCOME
    return None
