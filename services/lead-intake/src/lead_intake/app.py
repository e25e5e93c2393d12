"""lead-intake's composition root."""

from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.service_app import create_service_app
from lead_intake.api import (
    activities,
    data_keys,
    embed,
    forms,
    imports,
    meta_forms,
    privacy,
    submissions,
    webhook_secrets,
    webhooks,
)
from lead_intake.housekeeping import idempotency_purger
from lead_intake.meta_fetcher import meta_fetcher
from lead_intake.runtime import IntakeContext
from lead_intake.settings import IntakeSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    return create_service_app(
        settings,
        context=IntakeContext.of(settings),
        title="Funnel lead-intake",
        description="Form posts, imports and activities in; lead and activity events out.",
        migrations_dir=MIGRATIONS,
        routers=[
            submissions.router,
            embed.router,
            activities.router,
            forms.router,
            imports.router,
            privacy.router,
            data_keys.router,
            webhooks.router,
            webhook_secrets.router,
            meta_forms.router,
        ],
        workers=lambda runtime: [
            idempotency_purger(runtime, settings),
            *([meta_fetcher(runtime, settings)] if settings.meta_access_token else []),
        ],
    )
