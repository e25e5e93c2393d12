"""stage-tracker's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.service_app import create_service_app
from stage_tracker import api, funnels_api
from stage_tracker.consumer import workers
from stage_tracker.runtime import TrackerContext
from stage_tracker.settings import TrackerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: TrackerSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or TrackerSettings(),
        context=TrackerContext(),
        title="Funnel stage-tracker",
        description="Funnel definitions, scoring, and each lead's stage and why; "
        "lead, activity and touch events in, stage.changed and lead.scored out.",
        migrations_dir=MIGRATIONS,
        routers=[api.router, funnels_api.router],
        workers=workers,
    )
