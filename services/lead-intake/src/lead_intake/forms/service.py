"""The form registry's use cases, the form lookups of the public endpoints, embed.js.

A form's funnel must exist: stage-tracker (which owns funnels) is asked when a form is saved.
Without the check, a form naming a misspelt or unpublished funnel would take leads that the
tracker can only dead-letter: captured, but never in any stage. With FUNNEL_TRACKER_URL set,
saving such a form is refused (422 naming `funnel_id`); while the tracker cannot answer, it is
refused with 503 and Retry-After rather than saved unchecked. Unset (a single service run
alone, tests), forms are saved unchecked. Submissions never wait on this call (decision 0019).
The call is made before any transaction opens.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import asyncpg
import httpx
from pydantic import ValidationError

from funnel_servicekit.problems import (
    Problem,
    conflict,
    invalid_fields,
    not_found,
    unavailable,
    validation_problem,
)
from lead_intake import intake_metrics
from lead_intake.forms import store
from lead_intake.forms.models import Form, FormCreate, FormIn, FormList, FormOut, FormPatch
from lead_intake.runtime import IntakeRuntime
from lead_intake.settings import IntakeSettings

TEMPLATE = Path(__file__).resolve().parent.parent / "static" / "embed.js"
UNKNOWN_FORM = "urn:funnel:problem:unknown-form"


def unknown_form(form_id: str) -> Problem:
    return not_found("form", "form_id", form_id, type_=UNKNOWN_FORM)


# -- Lookups ---------------------------------------------------------------------------------


async def cached_form(runtime: IntakeRuntime, form_id: str) -> Form | None:
    """The form, from the short cache or the database (the public path)."""

    async def load(key: str) -> Form | None:
        async with runtime.pool.acquire() as conn:
            return await store.get_form(conn, key)

    form: Form | None = await runtime.context.form_cache.get(form_id, load)
    return form


async def public_form(runtime: IntakeRuntime, form_id: str) -> Form:
    """The cached form; 404 when there is none."""
    form = await cached_form(runtime, form_id)
    if form is None:
        raise unknown_form(form_id)
    return form


async def form_by_public_key(runtime: IntakeRuntime, public_key: str) -> Form | None:
    async with runtime.pool.acquire() as conn:
        return await store.get_form_by_public_key(conn, public_key)


async def registered_form(conn: asyncpg.Connection, form_id: str) -> Form:
    """The form as the database has it now (in the caller's connection); 404 when none."""
    form = await store.get_form(conn, form_id)
    if form is None:
        raise unknown_form(form_id)
    return form


async def count_post(
    runtime: IntakeRuntime, form: Form, client_ip: str | None, *, scope: str, endpoint: str
) -> None:
    """One hit on the form's public rate limits; the 429 (counted by endpoint) past them."""
    try:
        await runtime.context.rate_limits.check(
            runtime.pool,
            form.id,
            client_ip,
            per_ip=form.settings.rate_limit_per_ip,
            per_form=form.settings.rate_limit_per_form,
            scope=scope,
        )
    except Problem:
        intake_metrics.RATE_LIMITED.labels(endpoint).inc()
        raise


# -- The registry ----------------------------------------------------------------------------


async def create_form(runtime: IntakeRuntime, body: FormCreate) -> FormOut:
    """A new form; 409 when its id is taken, 422 when its funnel is not published."""
    await check_funnel(runtime.settings, body.funnel_id)
    async with runtime.pool.acquire() as conn:
        form = await store.create_form(conn, body.id, body)
    runtime.context.form_cache.forget(body.id)
    if form is None:
        raise conflict(f"a form with id {body.id!r} exists; PUT or PATCH it instead", field="id")
    return FormOut.of(form)


async def list_forms(runtime: IntakeRuntime, *, limit: int, after: str | None) -> FormList:
    async with runtime.pool.acquire() as conn:
        forms = await store.list_forms(conn, limit=limit, after=after)
    return FormList(
        forms=[FormOut.of(f) for f in forms],
        next_after=forms[-1].id if len(forms) == limit else None,
    )


async def get_form(runtime: IntakeRuntime, form_id: str) -> FormOut:
    async with runtime.pool.acquire() as conn:
        return FormOut.of(await registered_form(conn, form_id))


async def save_form(runtime: IntakeRuntime, form_id: str, body: FormIn) -> tuple[FormOut, bool]:
    """Create or replace a form's whole definition (its public key stays); True when created."""
    await check_funnel(runtime.settings, body.funnel_id)
    async with runtime.pool.acquire() as conn:
        form, created = await store.save_form(conn, form_id, body)
    runtime.context.form_cache.forget(form_id)
    return FormOut.of(form), created


async def patch_form(runtime: IntakeRuntime, form_id: str, patch: FormPatch) -> FormOut:
    """Some properties changed; the result validated as a whole, a new funnel checked first."""
    async with runtime.pool.acquire() as conn:
        form = await registered_form(conn, form_id)
    try:
        definition = form.patched(patch)
    except ValidationError as exc:
        raise validation_problem(exc, "Invalid form") from exc
    if definition.funnel_id != form.funnel_id:
        await check_funnel(runtime.settings, definition.funnel_id)  # no transaction open
    async with runtime.pool.acquire() as conn:
        saved, _created = await store.save_form(conn, form_id, definition)
    runtime.context.form_cache.forget(form_id)
    return FormOut.of(saved)


async def rotate_public_key(runtime: IntakeRuntime, form_id: str) -> FormOut:
    async with runtime.pool.acquire() as conn:
        form = await store.rotate_public_key(conn, form_id)
    runtime.context.form_cache.forget(form_id)
    if form is None:
        raise unknown_form(form_id)
    return FormOut.of(form)


async def seed_form(conn: asyncpg.Connection, form_id: str, definition: FormIn) -> None:
    """`python -m lead_intake seed-form`: written unchecked (the tracker may not run yet)."""
    await store.save_form(conn, form_id, definition)


async def check_funnel(settings: IntakeSettings, funnel_id: str) -> None:
    """Return when `funnel_id` has a published version; else raise the Problem to answer."""
    await funnel_stages(settings, funnel_id)


async def funnel_stages(settings: IntakeSettings, funnel_id: str) -> tuple[str, ...] | None:
    """The line stages of the funnel's newest version, as stage-tracker has it (None when no
    tracker is configured); the Problem to answer when it has no such funnel or is away."""
    if not settings.tracker_url:
        return None
    key = settings.tracker_api_key.get_secret_value() if settings.tracker_api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with httpx.AsyncClient(
            base_url=settings.tracker_url, headers=headers, timeout=settings.tracker_timeout_seconds
        ) as client:
            response = await client.get(f"/v1/funnels/{funnel_id}")
    except httpx.TransportError as exc:
        raise _unavailable(f"stage-tracker unreachable ({type(exc).__name__})") from exc
    if response.status_code == 404:
        # The exact body clients (and the e2e test) read: the field and message, no code.
        raise invalid_fields(
            [{"field": "funnel_id", "message": "no published funnel with this id"}],
            "Unknown funnel",
        )
    if response.status_code != 200:
        raise _unavailable(f"stage-tracker answered {response.status_code}")
    stages = response.json().get("stages")
    return tuple(str(s) for s in stages) if isinstance(stages, list) else None


def _unavailable(why: str) -> Problem:
    return unavailable(f"{why}; the form was not saved, try again shortly")


# -- embed.js --------------------------------------------------------------------------------


@functools.cache
def _template() -> str:
    return TEMPLATE.read_text()


def render_embed(config: dict[str, object]) -> str:
    """The script with the form's settings in it (safe inside a <script> element too)."""
    literal = json.dumps(config).replace("<", "\\u003c")
    return _template().replace("__FUNNEL_CONFIG__", literal)


def embed_script(form: Form, base_url: str) -> str:
    """The form's embed script: UTM and visitor fields, submit in place, the inline message."""
    base = base_url.rstrip("/")
    return render_embed(
        {
            "formId": form.id,
            "submitUrl": f"{base}/v1/forms/{form.id}/submissions",
            "activitiesUrl": f"{base}/v1/activities",
            "publicKey": form.public_key,
            "message": form.settings.thank_you_message,
            "honeypot": form.settings.honeypot_field,
            "trackPageViews": True,
            "attributionDays": form.settings.attribution_days,
            "consentRequired": form.settings.consent_required,
        }
    )
