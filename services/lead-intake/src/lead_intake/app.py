"""lead-intake's composition root."""

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from funnel_servicekit.runtime import Worker
from funnel_servicekit.service_app import create_service_app
from lead_intake.activities import routes as activities
from lead_intake.forms import routes as forms
from lead_intake.imports import routes as imports
from lead_intake.imports.worker import ImportRunner
from lead_intake.leads import routes as leads
from lead_intake.people import routes as people
from lead_intake.privacy import routes as privacy
from lead_intake.runtime import IntakeContext, IntakeRuntime
from lead_intake.settings import IntakeSettings
from lead_intake.submissions import routes as submissions
from lead_intake.submissions import service as submission_service
from lead_intake.submissions.worker import IdempotencyPurger
from lead_intake.webhooks import routes as webhooks
from lead_intake.webhooks.worker import MetaFetcher

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()

    def workers(runtime: IntakeRuntime) -> list[Worker]:
        loops = [
            IdempotencyPurger(runtime.pool, settings.idempotency_hours).worker(),
            ImportRunner(runtime).worker(),
        ]
        if settings.meta_access_token:
            loops.append(MetaFetcher(runtime.pool, settings).worker())
        return loops

    context = IntakeContext.of(settings)
    if context.form_posts is not None:
        # A group's new people written in one statement (docs/decisions/0082).
        context.form_posts.batch = partial(
            submission_service.write_batch, index=context.search_index
        )
    return create_service_app(
        settings,
        context=context,
        title="Funnel lead-intake",
        description="Form posts, imports and activities in; lead and activity events out.",
        migrations_dir=MIGRATIONS,
        routers=[
            submissions.router,
            activities.router,
            forms.router,
            imports.router,
            leads.router,
            people.router,
            privacy.router,
            webhooks.router,
        ],
        workers=workers,
    )
