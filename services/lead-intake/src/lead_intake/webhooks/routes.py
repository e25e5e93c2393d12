"""Ad platforms and webhooks: Meta Lead Ads, Typeform, Google Ads lead forms, generic HMAC;
their per-form secrets and the Meta form mappings (internal: `forms:admin`).

Each webhook verifies its signature or shared key before it looks up the form or reads the
payload: an unknown form and a bad signature are the same 401, which stores nothing.
Only hints of stored secrets ever leave, bar a newly generated one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import SecretStr

from funnel_servicekit.problems import Problem, invalid
from lead_intake.common.body import parse_json, read_limited
from lead_intake.deps import Admin, Runtime
from lead_intake.forms import service as forms
from lead_intake.forms.models import FormId
from lead_intake.runtime import IntakeRuntime
from lead_intake.webhooks import service
from lead_intake.webhooks.models import (
    GENERIC,
    GOOGLE_ADS,
    META,
    META_FORM_ID_PATTERN,
    SIGNATURE_TOLERANCE_SECONDS,
    TYPEFORM,
    MetaForm,
    MetaFormIn,
    MetaFormList,
    PayloadInvalid,
    SecretIn,
    SecretList,
    SecretOut,
    SecretPlatform,
    SignatureExpired,
    SignatureInvalid,
    TimedSignature,
    WebhookAccepted,
    generic_lead,
    google_ads_lead,
    google_key_of,
    meta_lead_ids,
    typeform_lead,
    verified_by,
    verify_any,
    verify_hex_signature,
    verify_shared_key,
    verify_typeform_signature,
)

router = APIRouter()
Platform = Annotated[SecretPlatform, Path(description="typeform, generic or google-ads.")]
MetaFormId = Annotated[
    str, Path(pattern=META_FORM_ID_PATTERN, description="The lead form's id at Meta.")
]


def _bad_signature(field: str, message: str = "does not match") -> Problem:
    return service.bad_signature(field, message)


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _payload_problem(exc: PayloadInvalid) -> Problem:
    return invalid(exc.field, exc.message, "Unexpected payload")


@router.get("/v1/webhooks/meta", response_class=PlainTextResponse, tags=["webhooks"])
async def meta_handshake(
    runtime: Runtime,
    mode: Annotated[str, Query(alias="hub.mode")],
    token: Annotated[str, Query(alias="hub.verify_token", max_length=500)],
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=500)],
) -> PlainTextResponse:
    """Meta's subscription handshake: echo the challenge when the verify token matches."""
    expected = service.secret_of(runtime.settings.meta_verify_token, META)
    try:
        verify_shared_key(expected, token)
    except SignatureInvalid:
        raise _bad_signature("hub.verify_token") from None
    if mode != "subscribe":
        raise invalid("hub.mode", "must be subscribe", "Invalid submission")
    return PlainTextResponse(challenge)


@router.post("/v1/webhooks/meta", tags=["webhooks"])
async def meta_webhook(request: Request, runtime: Runtime) -> WebhookAccepted:
    """Meta Lead Ads leadgen notifications: ids kept, fields fetched from Graph afterwards."""
    await service.count_delivery(runtime, META, "-", _client_ip(request))
    secret = service.secret_of(runtime.settings.meta_app_secret, META)
    raw = await read_limited(request, runtime.settings.max_body_bytes)
    try:
        verify_hex_signature(secret, raw, request.headers.get("x-hub-signature-256"))
    except SignatureInvalid:
        raise _bad_signature("X-Hub-Signature-256") from None
    try:
        announced = meta_lead_ids(parse_json(raw))
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    return await service.keep_meta_notices(runtime, announced)


async def _signed_body(
    request: Request,
    runtime: IntakeRuntime,
    form_id: str,
    platform: str,
    fallback: SecretStr | None,
    header: str,
    verify: Callable[[str, bytes, str | None], None],
) -> bytes:
    """The body, once its `header` is a signature by one of the form's (or the service's)
    secrets for `platform`; a 401 naming the header otherwise."""
    await service.count_delivery(runtime, platform, form_id, _client_ip(request))
    secrets = await service.form_secrets(runtime, form_id, platform, fallback)
    raw = await read_limited(request, runtime.settings.max_body_bytes)
    signature = request.headers.get(header)
    try:
        verify_any(secrets, lambda secret: verify(secret, raw, signature))
    except SignatureInvalid:
        raise _bad_signature(header) from None
    return raw


@router.post("/v1/forms/{form_id}/webhooks/typeform", tags=["webhooks"])
async def typeform_webhook(form_id: FormId, request: Request, runtime: Runtime) -> WebhookAccepted:
    """A Typeform form_response: answers mapped by field ref through the form's field_map."""
    raw = await _signed_body(
        request,
        runtime,
        form_id,
        "typeform",
        runtime.settings.typeform_secret,
        "Typeform-Signature",
        verify_typeform_signature,
    )
    form = await forms.public_form(runtime, form_id)
    try:
        lead = typeform_lead(parse_json(raw), form.settings.field_map)
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    return await service.capture_delivery(
        runtime.transactions,
        form,
        TYPEFORM,
        lead,
        runtime.context.search_index,
        group=runtime.context.form_posts,
    )


@router.post("/v1/forms/{form_id}/webhooks/google-ads", tags=["webhooks"])
async def google_ads_webhook(
    form_id: FormId, request: Request, runtime: Runtime
) -> WebhookAccepted:
    """A Google Ads lead form extension webhook: its google_key checked before anything else
    (an unknown form and a bad key answer the same 401)."""
    await service.count_delivery(runtime, GOOGLE_ADS, form_id, _client_ip(request))
    keys = await service.form_secrets(
        runtime, form_id, "google-ads", runtime.settings.google_ads_key
    )
    raw = await read_limited(request, runtime.settings.max_body_bytes)
    key = google_key_of(raw)
    try:
        verify_any(keys, lambda expected: verify_shared_key(expected, key))
    except SignatureInvalid:
        raise _bad_signature("google_key") from None
    form = await forms.public_form(runtime, form_id)
    try:
        lead, _key = google_ads_lead(parse_json(raw), form.settings.field_map)
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    return await service.capture_delivery(
        runtime.transactions,
        form,
        GOOGLE_ADS,
        lead,
        runtime.context.search_index,
        group=runtime.context.form_posts,
    )


GENERIC_SIGNATURE = "X-Funnel-Signature"


@router.post("/v1/forms/{form_id}/webhooks/generic", tags=["webhooks"])
async def generic_webhook(form_id: FormId, request: Request, runtime: Runtime) -> WebhookAccepted:
    """Any JSON signed with `X-Funnel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "t.body">`: five minutes' tolerance, each signature taken once. The old body-only
    `sha256=<hex>` only where the form's `accept_body_only_signature` allows it."""
    await service.count_delivery(runtime, GENERIC, form_id, _client_ip(request))
    secrets = await service.form_secrets(
        runtime, form_id, "generic", runtime.settings.webhook_hmac_secret
    )
    raw = await read_limited(request, runtime.settings.max_body_bytes)
    header = request.headers.get(GENERIC_SIGNATURE)
    timed = TimedSignature.parse(header)
    used: service.UsedSignature | None = None
    try:
        if timed is not None:
            digest = verified_by(
                secrets,
                lambda secret: timed.verify(
                    secret, raw, now=time.time(), tolerance=SIGNATURE_TOLERANCE_SECONDS
                ),
            )
            used = service.UsedSignature(digest, timed.timestamp)
        else:
            verify_any(secrets, lambda secret: verify_hex_signature(secret, raw, header))
    except SignatureExpired:
        raise _bad_signature(GENERIC_SIGNATURE, "expired: t is more than 5 minutes away") from None
    except SignatureInvalid:
        raise _bad_signature(GENERIC_SIGNATURE) from None
    form = await forms.public_form(runtime, form_id)
    if used is None and not form.settings.accept_body_only_signature:
        raise _bad_signature(GENERIC_SIGNATURE, "sign t=<unix seconds>,v1=<hex HMAC of t.body>")
    try:
        lead = generic_lead(parse_json(raw), form.settings.field_map)
    except PayloadInvalid as exc:
        raise _payload_problem(exc) from None
    return await service.capture_delivery(
        runtime.transactions,
        form,
        GENERIC,
        lead,
        runtime.context.search_index,
        used,
        group=runtime.context.form_posts,
    )


# -- Webhook secrets per form ----------------------------------------------------------------


@router.get("/v1/forms/{form_id}/webhook-secrets", tags=["forms"])
async def list_webhook_secrets(form_id: FormId, runtime: Runtime, _: Admin) -> SecretList:
    """The form's own webhook secrets, as hints; platforms not listed use the service's."""
    return await service.list_webhook_secrets(runtime, form_id)


@router.post("/v1/forms/{form_id}/webhook-secrets/{platform}", tags=["forms"])
async def rotate_webhook_secret(
    form_id: FormId,
    platform: Platform,
    runtime: Runtime,
    _: Admin,
    body: Annotated[SecretIn | None, Body()] = None,
) -> SecretOut:
    """Set or rotate the form's secret for a platform; the previous one stays valid a while."""
    return await service.rotate_webhook_secret(runtime, form_id, platform, body or SecretIn())


@router.delete("/v1/forms/{form_id}/webhook-secrets/{platform}", status_code=204, tags=["forms"])
async def delete_webhook_secret(
    form_id: FormId, platform: Platform, runtime: Runtime, _: Admin
) -> Response:
    """Drop the form's own secret: the service-wide one (if set) applies again."""
    await service.delete_webhook_secret(runtime, form_id, platform)
    return Response(status_code=204)


# -- Meta lead forms mapped to our forms -----------------------------------------------------


@router.put("/v1/meta-forms/{meta_form_id}", tags=["webhooks"])
async def put_meta_form(
    meta_form_id: MetaFormId, body: MetaFormIn, runtime: Runtime, response: Response, _: Admin
) -> MetaForm:
    """Route a Meta lead form's leads to one of our forms, its questions to our fields."""
    saved, created = await service.save_meta_form(runtime, meta_form_id, body)
    response.status_code = 201 if created else 200
    return saved


@router.get("/v1/meta-forms", tags=["webhooks"])
async def list_meta_forms(
    runtime: Runtime,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(pattern=META_FORM_ID_PATTERN)] = None,
) -> MetaFormList:
    """Mapped Meta lead forms in id order, a page at a time."""
    return await service.list_meta_forms(runtime, limit=limit, after=after)


@router.get("/v1/meta-forms/{meta_form_id}", tags=["webhooks"])
async def get_meta_form(meta_form_id: MetaFormId, runtime: Runtime, _: Admin) -> MetaForm:
    """One Meta lead form's mapping."""
    return await service.get_meta_form(runtime, meta_form_id)


@router.delete("/v1/meta-forms/{meta_form_id}", status_code=204, tags=["webhooks"])
async def delete_meta_form(meta_form_id: MetaFormId, runtime: Runtime, _: Admin) -> Response:
    """Forget a mapping: the Meta form's next leads join the service-wide Meta form."""
    await service.delete_meta_form(runtime, meta_form_id)
    return Response(status_code=204)
