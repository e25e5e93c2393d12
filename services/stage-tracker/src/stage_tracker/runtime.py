"""stage-tracker's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from funnel_servicekit.runtime import ServiceRuntime
from stage_tracker.settings import TrackerSettings


class Clock:
    """The wall clock the API reads (scores cool with it; moves and owner changes are dated
    by it). Tests pin it: `runtime.context.clock.pin(at)`; `pin(None)` lets it run again."""

    def __init__(self, pinned: datetime | None = None) -> None:
        self._pinned = pinned

    def now(self) -> datetime:
        return self._pinned if self._pinned is not None else datetime.now(UTC)

    def pin(self, at: datetime | None) -> None:
        self._pinned = at


@dataclass(frozen=True)
class TrackerContext:
    """One registry for the API and the loops: published versions are cached once."""

    # A stage_tracker.funnels.service.FunnelRegistry (made in app.py); typed loosely so the
    # runtime imports no concept package (they import the runtime).
    registry: Any
    clock: Clock = field(default_factory=Clock)


TrackerRuntime = ServiceRuntime[TrackerSettings, TrackerContext]
