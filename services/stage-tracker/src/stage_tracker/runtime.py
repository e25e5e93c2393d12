"""stage-tracker's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass, field

from funnel_servicekit.runtime import ServiceRuntime
from stage_tracker.funnel_registry import FunnelRegistry
from stage_tracker.settings import TrackerSettings


@dataclass(frozen=True)
class TrackerContext:
    """One registry for the API and the loops: published versions are cached once."""

    registry: FunnelRegistry = field(default_factory=FunnelRegistry)


TrackerRuntime = ServiceRuntime[TrackerSettings, TrackerContext]
