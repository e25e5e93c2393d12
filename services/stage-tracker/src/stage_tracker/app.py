"""stage-tracker's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import create_service_app
from stage_tracker.api import router
from stage_tracker.consumer import workers
from stage_tracker.settings import TrackerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: TrackerSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or TrackerSettings(),
        title="Funnel stage-tracker",
        description="Lead events in; each lead's stage and funnel.stage.changed events out.",
        migrations_dir=MIGRATIONS,
        routers=[router],
        workers=workers,
    )
