"""reporting's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import create_service_app
from reporting.api import router
from reporting.consumer import workers
from reporting.settings import ReportingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or ReportingSettings(),
        title="Funnel reporting",
        description="Stage events in; live funnel numbers out.",
        migrations_dir=MIGRATIONS,
        routers=[router],
        workers=workers,
    )
