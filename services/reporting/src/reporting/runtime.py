"""reporting's runtime: the kit's, typed by its settings (it needs no context of its own)."""

from __future__ import annotations

from funnel_servicekit.runtime import ServiceRuntime
from reporting.settings import ReportingSettings

ReportingRuntime = ServiceRuntime[ReportingSettings, None]
