"""lead-intake's HTTP API: the public form endpoint and the internal form registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field, ValidationError

from funnel_contracts import LeadCaptured
from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.outbox import enqueue
from funnel_servicekit.problems import Problem
from funnel_servicekit.runtime import ServiceRuntime
from lead_intake import store
from lead_intake.submission import SubmissionIn

router = APIRouter()
FormId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class SubmissionAccepted(BaseModel):
    lead_id: str
    submission_id: str
    new_lead: bool


class FormIn(BaseModel):
    funnel_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)


class FormOut(FormIn):
    id: str


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def _json_body(request: Request, limit: int) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Problem(
            415,
            "Unsupported media type",
            "send the form as application/json",
            type_="urn:funnel:problem:unsupported-media-type",
            errors=[{"field": "content-type", "message": "must be application/json"}],
        )
    body = await request.body()
    if len(body) > limit:
        raise Problem(
            413,
            "Body too large",
            f"the limit is {limit} bytes",
            type_="urn:funnel:problem:too-large",
        )
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Problem(
            400,
            "Malformed JSON",
            str(exc),
            type_="urn:funnel:problem:malformed",
            errors=[{"field": "body", "message": "not valid JSON"}],
        ) from exc


def _validation_problem(exc: ValidationError) -> Problem:
    errors = [
        {
            "field": ".".join(str(p) for p in e["loc"]) or "body",
            "message": e["msg"],
            "code": e["type"],
        }
        for e in exc.errors(include_url=False)
    ]
    return Problem(
        422,
        "Invalid submission",
        "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        type_="urn:funnel:problem:validation",
        errors=errors,
    )


@router.post("/v1/forms/{form_id}/submissions", status_code=202, tags=["public"])
async def submit_form(form_id: FormId, request: Request) -> SubmissionAccepted:
    """Capture a person from a form post; 202 once the lead and its event are committed."""
    runtime = _runtime(request)
    payload = await _json_body(request, runtime.settings.max_body_bytes)  # type: ignore[attr-defined]
    if not isinstance(payload, dict):
        raise Problem(
            422,
            "Invalid submission",
            "the body must be a JSON object",
            type_="urn:funnel:problem:validation",
            errors=[{"field": "body", "message": "must be a JSON object"}],
        )
    try:
        submission = SubmissionIn.model_validate(payload)
    except ValidationError as exc:
        raise _validation_problem(exc) from exc
    async with runtime.pool.acquire() as conn, conn.transaction():
        form = await store.get_form(conn, form_id)
        if form is None:
            raise Problem(
                404,
                "Unknown form",
                f"no form with id {form_id!r}",
                type_="urn:funnel:problem:unknown-form",
                errors=[{"field": "form_id", "message": "unknown form"}],
            )
        lead_id, created = await store.find_or_create_lead(conn, submission)
        submission_id = await store.insert_submission(
            conn, lead_id, form.id, submission, request.headers.get("user-agent")
        )
        if created:
            event = LeadCaptured(
                lead_id=lead_id,
                submission_id=submission_id,
                form_id=form.id,
                funnel_id=form.funnel_id,
                email=submission.email,
                first_name=submission.first_name,
                last_name=submission.last_name,
                phone=submission.phone,
                utm=submission.utm,
                landing_page=submission.landing_page,
                referrer=submission.referrer,
                captured_at=datetime.now(UTC),
            )
            await enqueue(
                conn, runtime.settings.db_schema, event, source=runtime.settings.service_name
            )
    return SubmissionAccepted(
        lead_id=str(lead_id), submission_id=str(submission_id), new_lead=created
    )


@router.put("/v1/forms/{form_id}", tags=["forms"])
async def put_form(
    form_id: FormId,
    body: FormIn,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("forms:admin"))],
) -> FormOut:
    """Create or update a form."""
    async with _runtime(request).pool.acquire() as conn:
        await store.upsert_form(conn, store.Form(form_id, body.funnel_id, body.name))
    return FormOut(id=form_id, **body.model_dump())


@router.get("/v1/forms/{form_id}", tags=["forms"])
async def get_form(
    form_id: FormId,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("forms:admin"))],
) -> FormOut:
    """One form."""
    async with _runtime(request).pool.acquire() as conn:
        form = await store.get_form(conn, form_id)
    if form is None:
        raise Problem(
            404,
            "Unknown form",
            f"no form with id {form_id!r}",
            type_="urn:funnel:problem:unknown-form",
        )
    return FormOut(id=form.id, funnel_id=form.funnel_id, name=form.name)
