"""The public form endpoint: JSON, urlencoded or multipart posts from landing pages."""

from __future__ import annotations

import hashlib
import html
import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel

from funnel_servicekit.problems import Problem
from lead_intake import intake_metrics
from lead_intake.api.context import FormId, Intake, client_ip, intake, invalid, unknown_form
from lead_intake.api.cors import cors_headers, preflight_headers, with_cors
from lead_intake.body import PostedBody, read_form_post
from lead_intake.capture import capture
from lead_intake.forms import Form
from lead_intake.normalize import truncate_ip
from lead_intake.store import idempotency
from lead_intake.submission import SubmissionInvalid, is_honeypot_filled, parse_submission

router = APIRouter(tags=["public"])
MAX_IDEMPOTENCY_KEY = 255


class SubmissionAccepted(BaseModel):
    lead_id: str
    submission_id: str
    new_lead: bool
    message: str | None = None
    redirect_url: str | None = None


async def _form(ctx: Intake, form_id: str) -> Form:
    form = await ctx.form(form_id)
    if form is None:
        raise unknown_form(form_id)
    return form


@router.options("/v1/forms/{form_id}/submissions", include_in_schema=False)
async def submission_preflight(form_id: FormId, request: Request) -> Response:
    """CORS preflight: which origins, methods and headers the form accepts."""
    form = await _form(intake(request), form_id)
    return Response(status_code=204, headers=preflight_headers(cors_headers(request, form)))


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
    ctx = intake(request)
    form = await _form(ctx, form_id)
    cors = cors_headers(request, form)
    try:
        await _limit(ctx, form, request)
        posted = await read_form_post(request, ctx.settings.max_body_bytes)
        if is_honeypot_filled(posted.values, form.settings):
            intake_metrics.HONEYPOT_DROPPED.labels(form.id).inc()
            answer = {"lead_id": str(uuid4()), "submission_id": str(uuid4()), "new_lead": True}
            return _respond(request, form, posted, answer, cors, replayed=False)
        answer, replayed = await _capture(ctx, form, posted, request)
        return _respond(request, form, posted, answer, cors, replayed=replayed)
    except Problem as problem:
        raise with_cors(problem, cors) from None


async def _limit(ctx: Intake, form: Form, request: Request) -> None:
    try:
        await ctx.rate_limits.check(form, client_ip(request))
    except Problem:
        intake_metrics.RATE_LIMITED.labels("submissions").inc()
        raise


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise invalid(
            [{"field": "Idempotency-Key", "message": "1 to 255 printable characters"}],
            "Invalid Idempotency-Key",
        )
    return key


async def _capture(
    ctx: Intake, form: Form, posted: PostedBody, request: Request
) -> tuple[dict[str, Any], bool]:
    now = datetime.now(UTC)
    try:
        sub = parse_submission(
            posted.values, form.settings, now=now, page_url=request.headers.get("referer")
        )
    except SubmissionInvalid as exc:
        raise invalid(exc.errors) from None
    key = _idempotency_key(request)
    # The parsed fields, not the raw bytes: a browser retrying a multipart post changes the
    # boundary but not the submission.
    digest = hashlib.sha256(
        json.dumps(posted.values, sort_keys=True, default=str).encode()
    ).hexdigest()
    scope = f"form:{form.id}"
    async with ctx.pool.acquire() as conn, conn.transaction():
        if key is not None:
            try:
                stored = await idempotency.claim(conn, scope, key, digest)
            except idempotency.KeyReused:
                raise Problem(
                    422,
                    "Idempotency-Key reused",
                    "this key was used with a different body; use a new key",
                    type_="urn:funnel:problem:idempotency-key-reused",
                    errors=[{"field": "Idempotency-Key", "message": "reused with another body"}],
                ) from None
            if stored is not None:
                intake_metrics.IDEMPOTENT_REPLAYS.inc()
                return stored, True
        try:
            captured = await capture(
                conn,
                ctx.outbox,
                form,
                sub,
                source="form",
                captured_at=now,
                user_agent=request.headers.get("user-agent"),
                ip_truncated=truncate_ip(request.client.host if request.client else None),
            )
        except SubmissionInvalid as exc:
            raise invalid(exc.errors) from None
        answer = {
            "lead_id": str(captured.lead_id),
            "submission_id": str(captured.submission_id),
            "new_lead": captured.new_lead,
        }
        if key is not None:
            await idempotency.remember(conn, scope, key, answer)
    return answer, False


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
    return HTMLResponse(page, status_code=200, headers=headers)
