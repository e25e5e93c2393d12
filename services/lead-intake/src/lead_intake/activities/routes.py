"""`POST /v1/activities`: what people do, from sites (a form's public key) or internal systems."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from funnel_servicekit.auth import Scope, authenticate, check_scopes
from funnel_servicekit.problems import Problem, invalid_fields, validation_problem
from lead_intake.activities import service
from lead_intake.activities.models import (
    ActivitiesAccepted,
    ActivityBatch,
    NotesOut,
    offline_errors,
    public_key_errors,
)
from lead_intake.common.body import read_json
from lead_intake.deps import ClientIp, PeopleReader, Runtime
from lead_intake.forms import service as forms
from lead_intake.forms.models import Form, cors_headers, preflight_headers, with_cors
from lead_intake.runtime import IntakeRuntime

router = APIRouter(tags=["activities"])
PUBLIC_KEY_HEADER = "x-funnel-key"


def _unauthorized(detail: str | None = None, *, field: str | None = None) -> Problem:
    errors = [{"field": field, "message": "unknown public key"}] if field else None
    return Problem(
        401, "Invalid public key", detail, type_="urn:funnel:problem:unauthorized", errors=errors
    )


@router.options("/v1/activities", include_in_schema=False)
async def activities_preflight(request: Request, runtime: Runtime) -> Response:
    """CORS preflight for beacons: with `?key=` (as embed.js sends), only the form's origins."""
    origin = request.headers.get("origin")
    key = request.query_params.get("key")
    if origin and key:
        form = await forms.form_by_public_key(runtime, key[:100])
        if form is None:
            raise _unauthorized()
        # 403 without any Access-Control-Allow-Origin for an origin the form refuses.
        return Response(status_code=204, headers=preflight_headers(cors_headers(origin, form)))
    # A key in the X-Funnel-Key header is not visible here: the post itself checks the origin.
    headers = preflight_headers({"Access-Control-Allow-Origin": origin} if origin else {})
    return Response(status_code=204, headers={**headers, "Vary": "Origin"})


@router.post("/v1/activities", status_code=202, response_model=ActivitiesAccepted)
async def record_activities(
    request: Request,
    runtime: Runtime,
    client_ip: ClientIp,
    key: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="A form's public key (beacons)."),
    ] = None,
) -> Response:
    """Record up to 500 activities; each is emitted now or, once its person is known, then."""
    form, cors, actor = await _caller(runtime, request, client_ip, key)
    try:
        payload = await read_json(request, runtime.settings.max_activity_body_bytes)
        try:
            batch = ActivityBatch.model_validate(payload)
        except ValidationError as exc:
            raise validation_problem(exc, "Invalid activities") from None
        errors = public_key_errors(batch) if form is not None else []
        if errors := errors + offline_errors(batch):
            raise invalid_fields(errors, "Invalid activities")
        result = await service.record_activities(
            runtime.transactions, batch, form_id=form.id if form else None, actor=actor
        )
        return JSONResponse(result.model_dump(mode="json"), status_code=202, headers=cors)
    except Problem as problem:
        raise with_cors(problem, cors) from None


@router.get(
    "/v1/leads/{lead_id}/notes",
    response_model=NotesOut,
    responses={404: {"description": "No such lead"}, 410: {"description": "Erased"}},
)
async def get_notes(lead_id: UUID, runtime: Runtime, _: PeopleReader) -> NotesOut:
    """A person's calls, meetings, events and notes, newest first (up to 200), with their
    outcome and words: the events carry the words only sealed (decision 0054)."""
    return await service.notes(runtime.pool, lead_id)


async def _caller(
    runtime: IntakeRuntime, request: Request, client_ip: str | None, key: str | None
) -> tuple[Form | None, dict[str, str], str | None]:
    """An internal key with leads:write (and its name, the actor of offline touches), or a
    form's public key (rate limited, CORS checked)."""
    public_key = request.headers.get(PUBLIC_KEY_HEADER) or key
    if request.headers.get("authorization") or not public_key:
        principal = check_scopes(await authenticate(request), Scope.LEADS_WRITE)
        return None, {}, principal.name
    form = await forms.form_by_public_key(runtime, public_key)
    if form is None:
        raise _unauthorized("no form has this public key", field="key")
    cors = cors_headers(request.headers.get("origin"), form)
    try:
        await forms.count_post(runtime, form, client_ip, scope="activities", endpoint="activities")
    except Problem as problem:
        raise with_cors(problem, cors) from None
    return form, cors, None
