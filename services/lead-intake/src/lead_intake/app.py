"""lead-intake's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import create_service_app
from lead_intake.api import router
from lead_intake.settings import IntakeSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or IntakeSettings(),
        title="Funnel lead-intake",
        description="Form posts in; leads and funnel.lead.captured events out.",
        migrations_dir=MIGRATIONS,
        routers=[router],
    )
