"""reporting's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from funnel_servicekit.runtime import ServiceRuntime
from reporting.settings import ReportingSettings


class UpstreamClient:
    """One httpx client to the other services (the workspace pages' calls), made on first use
    and again after `aclose` (an app started twice gets a fresh one)."""

    def __init__(self, **options: Any) -> None:
        self._options = options  # httpx.AsyncClient's own keyword arguments
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(**self._options)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


@dataclass(frozen=True)
class ReportingContext:
    """What lives as long as the process, beside the pool and the producer."""

    upstream: UpstreamClient = field(default_factory=UpstreamClient)

    @classmethod
    def of(cls, settings: ReportingSettings) -> ReportingContext:
        timeout = httpx.Timeout(settings.workspace_timeout_seconds, connect=2.0)
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        # No redirects followed, no proxy from the environment: calls go where settings say.
        return cls(UpstreamClient(timeout=timeout, limits=limits, trust_env=False))


ReportingRuntime = ServiceRuntime[ReportingSettings, ReportingContext]
