"""Touch events (topic funnel.touch-events), emitted by notifier."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from funnel_contracts import topics
from funnel_contracts.events.base import EventData

Channel = Literal["email", "webhook", "task"]


class TouchSent(EventData):
    """A touch reached its channel (an email accepted by the SMTP server, and so on)."""

    event_type: ClassVar[str] = "funnel.touch.sent.v1"
    topic: ClassVar[str] = topics.TOUCH_EVENTS

    touch_id: UUID
    playbook: str
    channel: Channel
    template: str
    funnel_id: str | None = None
    stage: str | None = None
    message_id: str | None = None
    sent_at: datetime


class TouchFailed(EventData):
    """A touch could not be delivered after its last try; it is kept for replay."""

    event_type: ClassVar[str] = "funnel.touch.failed.v1"
    topic: ClassVar[str] = topics.TOUCH_EVENTS

    touch_id: UUID
    playbook: str
    channel: Channel
    error: str = Field(max_length=2000)
    attempts: int = Field(ge=1)
    failed_at: datetime


class TouchOpened(EventData):
    """The open pixel of an email touch was loaded."""

    event_type: ClassVar[str] = "funnel.touch.opened.v1"
    topic: ClassVar[str] = topics.TOUCH_EVENTS

    touch_id: UUID
    opened_at: datetime


class TouchClicked(EventData):
    """A tracked link in a touch was followed."""

    event_type: ClassVar[str] = "funnel.touch.clicked.v1"
    topic: ClassVar[str] = topics.TOUCH_EVENTS

    touch_id: UUID
    url: str = Field(max_length=2048)
    clicked_at: datetime


class ConsentChanged(EventData):
    """A person granted or withdrew consent for one category (e.g. they unsubscribed)."""

    event_type: ClassVar[str] = "funnel.consent.changed.v1"
    topic: ClassVar[str] = topics.TOUCH_EVENTS

    category: str = Field(max_length=64)
    granted: bool
    source: str = Field(description="unsubscribe-link, one-click, preferences, api")
    touch_id: UUID | None = None
    changed_at: datetime


TaskStatus = Literal["open", "done", "dismissed"]


class TaskUpdated(EventData):
    """A sales task was created by a playbook, or changed by a person (done, dismissed,
    handed to someone, given another due time). `version` counts the task's changes.

    A team task (a leak playbook's) is about a funnel, not a person: `leak_id` names the
    leak, and `lead_id` repeats it only as the record key."""

    event_type: ClassVar[str] = "funnel.task.updated.v1"
    topic: ClassVar[str] = topics.TOUCH_EVENTS

    task_id: UUID
    title: str = Field(max_length=500)
    status: TaskStatus
    assignee: str | None = None
    due_at: datetime | None = None
    playbook: str | None = None
    version: int = Field(ge=1)
    actor: str | None = Field(default=None, description="The key's name; None for a playbook.")
    updated_at: datetime
    leak_id: UUID | None = Field(
        default=None,
        description="Set for a team task about a funnel leak: then no person's task (lead_id "
        "is the leak's id, the record key).",
    )
