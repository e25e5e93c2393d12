"""Which touches an event calls for (pure): match every enabled playbook's trigger."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from funnel_contracts import ActivityRecorded, EventData, LeadScored, StageChanged
from notifier.playbook_model import (
    ActivityTrigger,
    Channel,
    Kind,
    Playbook,
    StageEntered,
    TemperatureTrigger,
)


@dataclass(frozen=True)
class TouchPlan:
    """A touch to schedule: what, when, and what must still hold when it is due."""

    playbook: str
    channel: Channel
    kind: Kind
    category: str | None
    template: str
    due_at: datetime
    triggered_at: datetime
    dedupe_key: str
    funnel_id: str | None
    stage: str | None
    requires_stage: str | None
    cancel_on: tuple[str, ...]


def _matches(playbook: Playbook, event: EventData) -> tuple[datetime, str | None] | None:
    """When the event happened, and the stage it concerns, if the playbook's trigger fits."""
    trigger = playbook.trigger
    if isinstance(trigger, StageEntered) and isinstance(event, StageChanged):
        if trigger.funnels and event.funnel_id not in trigger.funnels:
            return None
        by_name = event.to_stage in trigger.stages
        by_position = trigger.position is not None and (
            event.to_stage_position == trigger.position
            and (trigger.position != 0 or event.from_stage is None)
        )
        return (event.changed_at, event.to_stage) if by_name or by_position else None
    if isinstance(trigger, ActivityTrigger) and isinstance(event, ActivityRecorded):
        if event.activity_type in trigger.activity_types:
            return event.occurred_at, None
        return None
    if isinstance(trigger, TemperatureTrigger) and isinstance(event, LeadScored):
        crossed = event.temperature == trigger.temperature
        if crossed and event.previous_temperature != trigger.temperature:
            return event.scored_at, None
    return None


def plans_for(
    playbooks: Iterable[Playbook],
    event: EventData,
    *,
    cause_id: str,
    current_stage: str | None = None,
    funnel_id: str | None = None,
) -> list[TouchPlan]:
    """The touches `event` calls for; `cause_id` makes "once per trigger" idempotent."""
    plans: list[TouchPlan] = []
    for playbook in playbooks:
        if not playbook.enabled:
            continue
        matched = _matches(playbook, event)
        if matched is None:
            continue
        at, stage = matched
        stage = stage or current_stage
        event_funnel = getattr(event, "funnel_id", None)
        plans.append(
            TouchPlan(
                playbook=playbook.name,
                channel=playbook.channel,
                kind=playbook.kind,
                category=playbook.category if playbook.kind == "marketing" else None,
                template=playbook.template or playbook.name,
                due_at=at + playbook.delay,
                triggered_at=at,
                dedupe_key="" if playbook.once_per == "lead" else cause_id,
                funnel_id=event_funnel if isinstance(event_funnel, str) else funnel_id,
                stage=stage,
                requires_stage=stage if playbook.conditions.still_in_stage else None,
                cancel_on=tuple(sorted({*playbook.cancel_on, *playbook.conditions.none_since})),
            )
        )
    return plans
