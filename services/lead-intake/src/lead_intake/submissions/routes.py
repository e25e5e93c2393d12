"""The public form endpoint: JSON, urlencoded or multipart posts from landing pages."""

from __future__ import annotations

import dataclasses
import html
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from funnel_servicekit.auth import Scope, authenticate, check_scopes
from funnel_servicekit.deps import runtime_of
from funnel_servicekit.problems import Problem, invalid_fields
from lead_intake import intake_metrics
from lead_intake.common.body import PostedBody, read_form_post
from lead_intake.common.normalize import truncate_ip
from lead_intake.deps import Runtime
from lead_intake.forms import service as forms
from lead_intake.forms.models import Form, FormId, cors_headers, preflight_headers, with_cors
from lead_intake.leads.models import SubmissionInvalid
from lead_intake.runtime import IntakeRuntime
from lead_intake.submissions import service
from lead_intake.submissions.models import (
    SubmissionAccepted,
    idempotency_key,
    is_honeypot_filled,
    parse_submission,
    take_test_flag,
)

router = APIRouter(tags=["public"])


@router.options("/v1/forms/{form_id}/submissions", include_in_schema=False)
async def submission_preflight(form_id: FormId, request: Request, runtime: Runtime) -> Response:
    """CORS preflight: which origins, methods and headers the form accepts."""
    form = await forms.public_form(runtime, form_id)
    cors = cors_headers(request.headers.get("origin"), form)
    return Response(status_code=204, headers=preflight_headers(cors))


@router.post(
    "/v1/forms/{form_id}/submissions",
    status_code=202,
    response_model=SubmissionAccepted,
    responses={303: {"description": "A plain HTML form post: to the form's thank-you URL"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "multipart/form-data": {"schema": {"type": "object"}},
            }
        }
    },
)
async def submit_form(form_id: FormId, request: Request) -> Response:
    """Capture a person from a form post; 202 (or 303 for a plain HTML form) once committed."""
    # The hottest path: the runtime and the address are read here, not through FastAPI
    # dependencies, whose resolution costs more per post than anything they do.
    runtime: IntakeRuntime = runtime_of(request)
    client_ip = request.client.host if request.client else None
    form = await forms.public_form(runtime, form_id)
    cors = cors_headers(request.headers.get("origin"), form)
    try:
        await forms.count_post(runtime, form, client_ip, scope="post", endpoint="submissions")
        posted = await read_form_post(request, runtime.settings.max_body_bytes)
        if is_honeypot_filled(posted.values, form.settings):
            intake_metrics.HONEYPOT_DROPPED.labels(form.id).inc()
            answer = {"lead_id": str(uuid4()), "submission_id": str(uuid4()), "new_lead": True}
            return _respond(request, form, posted, answer, cors, replayed=False)
        now = datetime.now(UTC)
        test = take_test_flag(posted.values)
        if test:  # only an admin key makes a test lead (401 / 403 otherwise)
            check_scopes(await authenticate(request), Scope.FORMS_ADMIN)
        try:
            sub = parse_submission(
                posted.values, form.settings, now=now, page_url=request.headers.get("referer")
            )
        except SubmissionInvalid as exc:
            raise invalid_fields(exc.errors, "Invalid submission") from None
        if test:
            sub = dataclasses.replace(sub, test=True)
        answer, replayed = await service.submit(
            runtime.transactions,
            form,
            sub,
            origin=service.PostOrigin(request.headers.get("user-agent"), truncate_ip(client_ip)),
            now=now,
            idempotency_key=idempotency_key(request.headers.get("idempotency-key")),
            digest=service.body_digest(posted.values),
            index=runtime.context.search_index,
            group=runtime.context.form_posts,
        )
        return _respond(request, form, posted, answer, cors, replayed=replayed)
    except Problem as problem:
        raise with_cors(problem, cors) from None


def _wants_json(request: Request, posted: PostedBody) -> bool:
    return not posted.from_html_form or "application/json" in request.headers.get("accept", "")


def _respond(
    request: Request,
    form: Form,
    posted: PostedBody,
    answer: dict[str, Any],
    cors: dict[str, str],
    *,
    replayed: bool,
) -> Response:
    headers = dict(cors)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if _wants_json(request, posted):
        body = SubmissionAccepted(
            **answer,
            message=form.settings.thank_you_message,
            redirect_url=form.settings.thank_you_url,
        )
        return JSONResponse(body.model_dump(), status_code=202, headers=headers)
    if form.settings.thank_you_url:
        return RedirectResponse(form.settings.thank_you_url, status_code=303, headers=headers)
    message = html.escape(form.settings.thank_you_message)
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Thank you</title></head>'
        f"<body><p>{message}</p></body></html>"
    )
    # The message is the form owner's text, escaped; the page loads and runs nothing at all.
    headers["Content-Security-Policy"] = "default-src 'none'; base-uri 'none'"
    headers["X-Content-Type-Options"] = "nosniff"
    return HTMLResponse(page, status_code=200, headers=headers)
