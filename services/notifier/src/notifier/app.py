"""notifier's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import Worker
from funnel_servicekit.service_app import create_service_app
from notifier.api import router
from notifier.consumer import consumer_worker
from notifier.playbook_api import router as playbook_router
from notifier.runtime import NotifierContext, NotifierRuntime
from notifier.sender import sender_worker
from notifier.settings import NotifierSettings
from notifier.tracking_api import router as tracking_router

MIGRATIONS = Path(__file__).parent / "migrations"


def _workers(runtime: NotifierRuntime) -> list[Worker]:
    return [consumer_worker(runtime), sender_worker(runtime)]


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
        routers=[router, playbook_router, tracking_router],
        workers=_workers,
    )
