"""reporting's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.service_app import create_service_app
from reporting.api import router
from reporting.consumer import workers
from reporting.dashboard import mount_static
from reporting.dashboard import router as dashboard_router
from reporting.insights_api import router as insights_router
from reporting.settings import ReportingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    app = create_service_app(
        settings or ReportingSettings(),
        context=None,
        title="Funnel reporting",
        description="Every funnel topic in; live conversion views, CSV and a dashboard out.",
        migrations_dir=MIGRATIONS,
        routers=[router, insights_router, dashboard_router],
        workers=workers,
    )
    mount_static(app)
    return app
