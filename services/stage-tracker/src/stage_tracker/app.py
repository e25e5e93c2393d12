"""stage-tracker's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import Worker
from funnel_servicekit.service_app import create_service_app
from stage_tracker.funnels import routes as funnels
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.moves import routes as moves
from stage_tracker.moves.consumer import event_consumer
from stage_tracker.queue import routes as queue
from stage_tracker.runtime import TrackerContext, TrackerRuntime
from stage_tracker.settings import TrackerSettings
from stage_tracker.timers.worker import stall_timer_worker

MIGRATIONS = Path(__file__).parent / "migrations"


def workers(runtime: TrackerRuntime) -> list[Worker]:
    consumer = event_consumer(runtime)
    return [
        Worker("funnel-events-consumer", consumer.run, consumer.stop),
        stall_timer_worker(runtime),
    ]


def create_app(settings: TrackerSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or TrackerSettings(),
        context=TrackerContext(registry=FunnelRegistry()),
        title="Funnel stage-tracker",
        description="Funnel definitions, scoring, and each lead's stage and why; "
        "lead, activity and touch events in, stage.changed and lead.scored out.",
        migrations_dir=MIGRATIONS,
        routers=[queue.router, moves.router, funnels.router],
        workers=workers,
    )
