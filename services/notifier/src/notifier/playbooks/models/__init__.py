"""What a playbook is (pure): a trigger, a delay, conditions re-checked at send time, a channel;
and which touches an event calls for (every enabled playbook's trigger matched against it).

Playbooks are written in YAML or JSON and validated by these models; unknown fields are
refused so that a typo ("delya") is an error, not a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadScored,
    LeakDetected,
    LeakResolved,
    StageChanged,
)
from funnel_contracts.events import KNOWN_ACTIVITY_TYPES
from notifier.frequency_caps import Cap as Cap  # a playbook's caps, re-exported

Channel = Literal["email", "webhook", "task"]
Kind = Literal["marketing", "transactional"]
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageEntered(Strict):
    """A lead entered a stage: by name, or by position (0 = the funnel's first stage)."""

    type: Literal["stage_entered"] = "stage_entered"
    stages: tuple[str, ...] = ()
    position: int | None = Field(default=None, ge=0)
    funnels: tuple[str, ...] = Field(default=(), description="empty = every funnel")

    @model_validator(mode="after")
    def _one_selector(self) -> StageEntered:
        if not self.stages and self.position is None:
            raise ValueError("name the stages or give a position")
        return self


class ActivityTrigger(Strict):
    """A lead did something (an activity type, e.g. cart_abandoned)."""

    type: Literal["activity"] = "activity"
    activity_types: tuple[str, ...] = Field(min_length=1)


class TemperatureTrigger(Strict):
    """A lead's temperature crossed into a value (hot: sales steps in)."""

    type: Literal["temperature"] = "temperature"
    temperature: Literal["warm", "hot"] = "hot"


class LeakTrigger(Strict):
    """Reporting found a funnel step leaking (or recovering): a message to the team, not to a
    person, so only a task (delivered to the sales system's webhook when one is set)."""

    type: Literal["leak"] = "leak"
    funnels: tuple[str, ...] = Field(default=(), description="empty = every funnel")
    events: tuple[Literal["detected", "resolved"], ...] = Field(default=("detected",), min_length=1)


Trigger = StageEntered | ActivityTrigger | TemperatureTrigger | LeakTrigger


class Conditions(Strict):
    """Checked again when the touch is due; a failing one suppresses it, with the reason."""

    still_in_stage: bool = Field(
        default=False, description="the lead is still in the stage that triggered the touch"
    )
    none_since: tuple[str, ...] = Field(
        default=(), description="no activity of these types since the trigger (e.g. a purchase)"
    )


class LocalizedTemplate(Strict):
    subject: str = Field(default="", max_length=500)
    text: str = Field(min_length=1, max_length=50_000)
    html: str | None = Field(default=None, max_length=200_000)


class WebhookTarget(Strict):
    url: str = Field(max_length=2048, pattern=r"^https?://")


class Playbook(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=500)
    enabled: bool = True
    trigger: Trigger = Field(discriminator="type")
    delay: timedelta = timedelta(0)
    channel: Channel = "email"
    kind: Kind = "marketing"
    category: str = Field(
        default="marketing", max_length=64, description="consent category (marketing touches)"
    )
    template: str = Field(default="", max_length=100, description="a shipped template's name")
    templates: dict[str, LocalizedTemplate] = Field(
        default_factory=dict, description="inline templates by locale (en is required)"
    )
    conditions: Conditions = Conditions()
    cancel_on: tuple[str, ...] = Field(
        default=(), description="activity types that cancel the scheduled touch at once"
    )
    once_per: Literal["lead", "trigger"] = "lead"
    caps: tuple[Cap, ...] = ()
    max_trigger_age: timedelta = Field(
        default=timedelta(days=1),
        description=(
            "a trigger (stage entry, capture, activity, score) older than this when the touch "
            "would be scheduled is not acted on: the touch is recorded skipped, reason stale"
        ),
    )
    webhook: WebhookTarget | None = None
    task_title: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> Playbook:
        if self.delay < timedelta(0):
            raise ValueError("delay must not be negative")
        if self.max_trigger_age <= timedelta(0):
            raise ValueError("max_trigger_age must be positive")
        if self.channel == "email" and not (self.template or self.templates):
            raise ValueError("an email playbook needs a template or inline templates")
        if self.templates and "en" not in self.templates:
            raise ValueError("inline templates need at least the en locale")
        if self.channel == "webhook" and self.webhook is None:
            raise ValueError("a webhook playbook needs webhook.url")
        if self.channel == "task" and not self.task_title:
            raise ValueError("a task playbook needs a task_title")
        if isinstance(self.trigger, LeakTrigger) and self.channel != "task":
            raise ValueError("a leak playbook makes a task (for the team, not a person)")
        return self

    def unknown_activity_types(self) -> list[str]:
        """Activity types named here that no producer emits (a warning, not an error)."""
        named = set(self.cancel_on) | set(self.conditions.none_since)
        if isinstance(self.trigger, ActivityTrigger):
            named |= set(self.trigger.activity_types)
        return sorted(named - set(KNOWN_ACTIVITY_TYPES))


@dataclass(frozen=True)
class StoredPlaybook:
    playbook: Playbook
    origin: str  # "shipped" or "saved"
    version: int
    updated_at: datetime | None


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
    stale: bool = False  # the trigger was older than the playbook's max_trigger_age


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
    if isinstance(trigger, LeakTrigger) and isinstance(event, LeakDetected | LeakResolved):
        if trigger.funnels and event.funnel_id not in trigger.funnels:
            return None
        if isinstance(event, LeakDetected):
            return (event.detected_at, event.to_stage) if "detected" in trigger.events else None
        return (event.resolved_at, event.to_stage) if "resolved" in trigger.events else None
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
    now: datetime,
) -> list[TouchPlan]:
    """The touches `event` calls for; `cause_id` makes "once per trigger" idempotent.

    A trigger older than its playbook's `max_trigger_age` at `now` (an imported contact's
    weeks-old capture, a stall move dated at a limit passed long ago) gives a `stale` plan:
    recorded as skipped, never sent. Its dedupe key is the cause, so a stale trigger never
    takes the place of a fresh one later ("once per lead" still holds for what is sent)."""
    plans: list[TouchPlan] = []
    for playbook in playbooks:
        if not playbook.enabled:
            continue
        matched = _matches(playbook, event)
        if matched is None:
            continue
        at, stage = matched
        stage = stage or current_stage
        stale = now - at > playbook.max_trigger_age
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
                dedupe_key=(
                    f"stale:{cause_id}"
                    if stale
                    else ("" if playbook.once_per == "lead" else cause_id)
                ),
                funnel_id=event_funnel if isinstance(event_funnel, str) else funnel_id,
                stage=stage,
                requires_stage=stage if playbook.conditions.still_in_stage else None,
                cancel_on=tuple(sorted({*playbook.cancel_on, *playbook.conditions.none_since})),
                stale=stale,
            )
        )
    return plans
