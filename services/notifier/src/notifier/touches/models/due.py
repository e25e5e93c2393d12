"""A touch the sender has locked to decide on (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True)
class DueTouch:
    id: UUID
    lead_id: UUID
    playbook: str
    channel: str
    kind: str
    category: str | None
    template: str
    funnel_id: str | None
    stage: str | None
    requires_stage: str | None
    cancel_on: tuple[str, ...]
    triggered_at: datetime
    due_at: datetime
    first_due_at: datetime
    attempts: int
    trace_context: dict[str, str]
