"""Frequency caps: at most so many touches within a period. Playbooks carry their own; the
settings carry the defaults per channel (so both import this, and neither the other)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field


class Cap(BaseModel):
    """At most `count` touches of this playbook per lead within `period`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1)
    period: timedelta
