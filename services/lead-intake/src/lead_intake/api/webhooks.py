"""Ad platforms and webhooks: Meta Lead Ads, Typeform, Google Ads lead forms, generic HMAC.

Each verifies its signature or shared key first; a bad one is a 401 and stores nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, SecretStr

from funnel_servicekit.problems import Problem
from lead_intake.api.context import FormId, Intake, intake, invalid, unknown_form
from lead_intake.body import parse_json, read_limited
from lead_intake.forms import Form
from lead_intake.meta_forms import meta_form_id
from lead_intake.platform_capture import capture_platform_lead
from lead_intake.platforms import (
    GENERIC,
    GOOGLE_ADS,
    META,
    TYPEFORM,
    PayloadInvalid,
    PlatformLead,
    SignatureInvalid,
    generic_lead,
    google_ads_lead,
    meta_lead_ids,
    typeform_lead,
    verify_hex_signature,
    verify_shared_key,
    verify_typeform_signature,
)
from lead_intake.store import meta_forms as meta_forms_store
from lead_intake.store import platform_leads
from lead_intake.store import webhook_secrets as secrets_store
from lead_intake.submission import SubmissionInvalid
from lead_intake.webhook_secrets import verify_any

router = APIRouter(tags=["webhooks"])


class WebhookAccepted(BaseModel):
    lead_id: str | None = None
    new_lead: bool = False
    received: int = 1


def _secret(value: SecretStr | None, platform: str) -> str:
    if value is None:
        raise Problem(
            404,
            "Webhook not configured",
            f"this service has no secret for {platform}",
            type_="urn:funnel:problem:not-configured",
            errors=[{"field": "platform", "message": "not configured"}],
        )
    return value.get_secret_value()


async def _form_secrets(
    ctx: Intake, form_id: str, platform: str, fallback: SecretStr | None
) -> list[str]:
    """The form's own secrets (the current one, and the previous during its grace), else the
    service-wide one."""
    async with ctx.pool.acquire() as conn:
        stored = await secrets_store.get_secret(conn, form_id, platform)
    if stored is not None:
        return stored.valid(datetime.now(UTC))
    return [_secret(fallback, platform)]


def _bad_signature(field: str) -> Problem:
    return Problem(
        401,
        "Bad signature",
        "the payload is not signed with the shared secret",
        type_="urn:funnel:problem:bad-signature",
        errors=[{"field": field, "message": "does not match"}],
    )


def _json(raw: bytes) -> Any:
    return parse_json(raw)


async def _form(ctx: Intake, form_id: str) -> Form:
    form = await ctx.form(form_id)
    if form is None:
        raise unknown_form(form_id)
    return form


async def _capture(ctx: Intake, form: Form, platform: str, lead: PlatformLead) -> WebhookAccepted:
    try:
        async with ctx.pool.acquire() as conn, conn.transaction():
            captured = await capture_platform_lead(
                conn, ctx.outbox, form, platform, lead, now=datetime.now(UTC)
            )
    except SubmissionInvalid as exc:
        raise invalid(exc.errors, "Lead does not fit the form") from None
    return WebhookAccepted(lead_id=str(captured.lead_id), new_lead=captured.new_lead)


def _payload_problem(exc: PayloadInvalid) -> Problem:
    return invalid([{"field": exc.field, "message": exc.message}], "Unexpected payload")


@router.get("/v1/webhooks/meta", response_class=PlainTextResponse)
async def meta_handshake(
    request: Request,
    mode: Annotated[str, Query(alias="hub.mode")],
    token: Annotated[str, Query(alias="hub.verify_token", max_length=500)],
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=500)],
) -> PlainTextResponse:
    """Meta's subscription handshake: echo the challenge when the verify token matches."""
    expected = _secret(intake(request).settings.meta_verify_token, META)
    try:
        verify_shared_key(expected, token)
    except SignatureInvalid:
        raise _bad_signature("hub.verify_token") from None
    if mode != "subscribe":
        raise invalid([{"field": "hub.mode", "message": "must be subscribe"}])
    return PlainTextResponse(challenge)


@router.post("/v1/webhooks/meta")
async def meta_webhook(request: Request) -> WebhookAccepted:
    """Meta Lead Ads leadgen notifications: ids kept, fields fetched from Graph afterwards."""
    ctx = intake(request)
    secret = _secret(ctx.settings.meta_app_secret, META)
    raw = await read_limited(request, ctx.settings.max_body_bytes)
    try:
        verify_hex_signature(secret, raw, request.headers.get("x-hub-signature-256"))
    except SignatureInvalid:
        raise _bad_signature("X-Hub-Signature-256") from None
    try:
        announced = meta_lead_ids(_json(raw))
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    form_ids = await _meta_targets(ctx, [notice for _, notice in announced])
    async with ctx.pool.acquire() as conn, conn.transaction():
        for (leadgen_id, notice), form_id in zip(announced, form_ids, strict=True):
            await platform_leads.add_pending(conn, META, leadgen_id, form_id, notice)
    return WebhookAccepted(received=len(announced))


async def _meta_targets(ctx: Intake, notices: list[dict[str, Any]]) -> list[str]:
    """Our form for each announced lead: its Meta form's mapping, else the service-wide form.

    With neither, a 503: Meta delivers the notice again later, once the form is registered.
    """
    named = [meta_form_id(n) for n in notices]
    wanted = sorted({m for m in named if m is not None})
    async with ctx.pool.acquire() as conn:
        mapped = await meta_forms_store.get_meta_forms(conn, wanted) if wanted else {}
    targets: list[str] = []
    fallback = ctx.settings.meta_form_id
    for meta_id in named:
        mapping = mapped.get(meta_id) if meta_id is not None else None
        targets.append(mapping.form_id if mapping is not None else fallback)
    if fallback in targets and await ctx.form(fallback) is None:
        raise Problem(
            503,
            "Meta form missing",
            f"map the Meta form (PUT /v1/meta-forms/{{id}}) or register the form {fallback!r}",
            type_="urn:funnel:problem:not-configured",
        )
    return targets


@router.post("/v1/forms/{form_id}/webhooks/typeform")
async def typeform_webhook(form_id: FormId, request: Request) -> WebhookAccepted:
    """A Typeform form_response: answers mapped by field ref through the form's field_map."""
    ctx = intake(request)
    secrets = await _form_secrets(ctx, form_id, "typeform", ctx.settings.typeform_secret)
    raw = await read_limited(request, ctx.settings.max_body_bytes)
    header = request.headers.get("typeform-signature")
    try:
        verify_any(secrets, lambda secret: verify_typeform_signature(secret, raw, header))
    except SignatureInvalid:
        raise _bad_signature("Typeform-Signature") from None
    form = await _form(ctx, form_id)
    try:
        lead = typeform_lead(_json(raw), form.settings.field_map)
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    return await _capture(ctx, form, TYPEFORM, lead)


@router.post("/v1/forms/{form_id}/webhooks/google-ads")
async def google_ads_webhook(form_id: FormId, request: Request) -> WebhookAccepted:
    """A Google Ads lead form extension webhook: checked by its google_key."""
    ctx = intake(request)
    keys = await _form_secrets(ctx, form_id, "google-ads", ctx.settings.google_ads_key)
    raw = await read_limited(request, ctx.settings.max_body_bytes)
    form = await _form(ctx, form_id)
    try:
        lead, key = google_ads_lead(_json(raw), form.settings.field_map)
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    try:
        verify_any(keys, lambda expected: verify_shared_key(expected, key))
    except SignatureInvalid:
        raise _bad_signature("google_key") from None
    return await _capture(ctx, form, GOOGLE_ADS, lead)


@router.post("/v1/forms/{form_id}/webhooks/generic")
async def generic_webhook(form_id: FormId, request: Request) -> WebhookAccepted:
    """Any JSON signed with X-Funnel-Signature: sha256=<hex HMAC>; fields by the form's map."""
    ctx = intake(request)
    secrets = await _form_secrets(ctx, form_id, "generic", ctx.settings.webhook_hmac_secret)
    raw = await read_limited(request, ctx.settings.max_body_bytes)
    header = request.headers.get("x-funnel-signature")
    try:
        verify_any(secrets, lambda secret: verify_hex_signature(secret, raw, header))
    except SignatureInvalid:
        raise _bad_signature("X-Funnel-Signature") from None
    form = await _form(ctx, form_id)
    try:
        lead = generic_lead(_json(raw), form.settings.field_map)
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    return await _capture(ctx, form, GENERIC, lead)
