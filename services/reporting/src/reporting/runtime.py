"""reporting's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from funnel_servicekit.http_client import ReopeningClient
from funnel_servicekit.live import ChangeFeed, changed_channel
from funnel_servicekit.runtime import ServiceRuntime
from reporting.settings import ReportingSettings


@dataclass(frozen=True)
class ReportingContext:
    """What lives as long as the process, beside the pool and the producer."""

    # The projection's commits, for the snapshot's live streams (`reports.live`).
    live: ChangeFeed
    upstream: ReopeningClient = field(default_factory=ReopeningClient)

    @classmethod
    def of(cls, settings: ReportingSettings) -> ReportingContext:
        timeout = httpx.Timeout(settings.workspace_timeout_seconds, connect=2.0)
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        feed = ChangeFeed(
            settings.database_url, settings.db_schema, changed_channel(settings.db_schema)
        )
        # No redirects followed, no proxy from the environment: calls go where settings say.
        return cls(feed, ReopeningClient(timeout=timeout, limits=limits, trust_env=False))


ReportingRuntime = ServiceRuntime[ReportingSettings, ReportingContext]
