"""notifier's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import Worker
from funnel_servicekit.service_app import create_service_app
from notifier.people.worker import contact_resolver_worker
from notifier.playbooks.routes import router as playbooks_router
from notifier.runtime import NotifierContext, NotifierRuntime
from notifier.settings import NotifierSettings
from notifier.tasks.routes import router as tasks_router
from notifier.touches.consumer import consumer_worker
from notifier.touches.routes import router as touches_router
from notifier.touches.worker import sender_worker
from notifier.tracking.routes import router as tracking_router

MIGRATIONS = Path(__file__).parent / "migrations"


def _workers(runtime: NotifierRuntime) -> list[Worker]:
    return [consumer_worker(runtime), contact_resolver_worker(runtime), sender_worker(runtime)]


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    return create_service_app(
        settings,
        context=NotifierContext.of(settings),
        title="Funnel notifier",
        description=(
            "Lead, activity and stage events in; touches out (email over SMTP, signed "
            "webhooks, sales tasks) and touch events (sent, failed, opened, clicked, consent)."
        ),
        migrations_dir=MIGRATIONS,
        routers=[touches_router, tasks_router, playbooks_router, tracking_router],
        workers=_workers,
    )
