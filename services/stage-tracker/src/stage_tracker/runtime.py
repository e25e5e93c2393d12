"""stage-tracker's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from funnel_servicekit.runtime import ServiceRuntime
from stage_tracker.settings import TrackerSettings


@dataclass(frozen=True)
class TrackerContext:
    """One registry for the API and the loops: published versions are cached once."""

    # A stage_tracker.funnels.service.FunnelRegistry (made in app.py); typed loosely so the
    # runtime imports no concept package (they import the runtime).
    registry: Any


TrackerRuntime = ServiceRuntime[TrackerSettings, TrackerContext]
