"""reporting's composition root."""

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from funnel_servicekit.service_app import create_service_app
from reporting.dashboard.routes import mount_static
from reporting.dashboard.routes import router as dashboard_router
from reporting.leaks.routes import router as leaks_router
from reporting.leaks.worker import leak_watch_worker
from reporting.projection.consumer import workers as projection_workers
from reporting.projection.worker import fold_worker
from reporting.reports.routes import router as reports_router
from reporting.runtime import ReportingContext
from reporting.settings import MIGRATIONS, ReportingSettings
from reporting.timeline.routes import router as timeline_router
from reporting.workspace.routes import router as workspace_router

__all__ = ["MIGRATIONS", "create_app"]


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    context = ReportingContext.of(settings)
    app = create_service_app(
        settings,
        context=context,
        title="Funnel reporting",
        description="Every funnel topic in; live conversion views, CSV and a dashboard out.",
        migrations_dir=MIGRATIONS,
        routers=[reports_router, leaks_router, timeline_router, dashboard_router, workspace_router],
        workers=lambda runtime: [
            *projection_workers(runtime),
            fold_worker(runtime),
            *([leak_watch_worker(runtime)] if runtime.settings.leak_check_seconds else []),
        ],
    )
    mount_static(app)
    kit_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The kit's lifespan, then the workspace's client to the other services is closed.
        try:
            async with kit_lifespan(app):
                yield
        finally:
            await context.upstream.aclose()

    app.router.lifespan_context = lifespan
    return app
