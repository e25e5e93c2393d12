"""What the code says about each service: its Settings class, module, port and routes."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic_settings import BaseSettings

from lead_intake.app import create_app as intake_app
from lead_intake.settings import IntakeSettings
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from reporting.app import create_app as reporting_app
from reporting.settings import ReportingSettings
from stage_tracker.app import create_app as tracker_app
from stage_tracker.settings import TrackerSettings


@dataclass(frozen=True)
class ServiceInCode:
    name: str
    module: str
    settings: type[BaseSettings]
    app_factory: Any

    @property
    def port(self) -> int:
        default = self.settings.model_fields["http_port"].default
        assert isinstance(default, int)
        return default

    def env_names(self) -> set[str]:
        """Every FUNNEL_* variable the service reads: its Settings fields, prefixed."""
        return {f"FUNNEL_{field.upper()}" for field in self.settings.model_fields}

    def route_paths(self, **env: str) -> set[str]:
        return _routes(self.name, tuple(sorted(env.items())))


SERVICES = {
    s.name: s
    for s in (
        ServiceInCode("lead-intake", "lead_intake", IntakeSettings, intake_app),
        ServiceInCode("stage-tracker", "stage_tracker", TrackerSettings, tracker_app),
        ServiceInCode("notifier", "notifier", NotifierSettings, notifier_app),
        ServiceInCode("reporting", "reporting", ReportingSettings, reporting_app),
    )
}
BY_MODULE = {s.module: s for s in SERVICES.values()}

# Read by the OpenTelemetry SDK, not by Settings (docs/settings-common.md).
OTEL_VARIABLES = {"OTEL_EXPORTER_OTLP_ENDPOINT"}
# Read by uvicorn, which the kit starts (funnel_servicekit.cli): whose X-Forwarded-* to trust.
UVICORN_VARIABLES = {"FORWARDED_ALLOW_IPS"}


@functools.cache
def _routes(name: str, env: tuple[tuple[str, str], ...]) -> set[str]:
    service = SERVICES[name]
    settings = service.settings(**{k.removeprefix("FUNNEL_").lower(): v for k, v in env})
    app: FastAPI = service.app_factory(settings)
    return set(_paths(app.routes, ""))


def _paths(routes: Any, prefix: str) -> list[str]:
    """Route paths, through included routers (FastAPI keeps those as wrappers)."""
    found: list[str] = []
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:
            found += _paths(route.original_router.routes, prefix + context.prefix)
        elif getattr(route, "path", None):
            found.append(prefix + route.path)
    return found
