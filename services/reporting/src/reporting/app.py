"""reporting's composition root."""

from fastapi import FastAPI

from funnel_servicekit.service_app import create_service_app
from reporting.dashboard.routes import mount_static
from reporting.dashboard.routes import router as dashboard_router
from reporting.projection.consumer import workers
from reporting.reports.routes import router as reports_router
from reporting.settings import MIGRATIONS, ReportingSettings

__all__ = ["MIGRATIONS", "create_app"]


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    app = create_service_app(
        settings or ReportingSettings(),
        context=None,
        title="Funnel reporting",
        description="Every funnel topic in; live conversion views, CSV and a dashboard out.",
        migrations_dir=MIGRATIONS,
        routers=[reports_router, dashboard_router],
        workers=workers,
    )
    mount_static(app)
    return app
