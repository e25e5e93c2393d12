"""notifier's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import ServiceRuntime, Worker, create_service_app
from notifier.api import router
from notifier.consumer import consumer_worker
from notifier.sender import sender_worker
from notifier.settings import NotifierSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def _workers(runtime: ServiceRuntime) -> list[Worker]:
    return [consumer_worker(runtime), sender_worker(runtime)]


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or NotifierSettings(),
        title="Funnel notifier",
        description="Stage events in; touches out over SMTP, and funnel.touch.sent events.",
        migrations_dir=MIGRATIONS,
        routers=[router],
        workers=_workers,
    )
