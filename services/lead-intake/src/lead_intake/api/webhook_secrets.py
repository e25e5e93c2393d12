"""Webhook secrets per form (internal: `forms:admin`); only hints ever leave, bar a new one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from pydantic import BaseModel

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from lead_intake.api.context import FormId, intake, unknown_form
from lead_intake.store import forms as forms_store
from lead_intake.store import webhook_secrets as store
from lead_intake.webhook_secrets import SecretIn, SecretOut, SecretPlatform, new_secret

router = APIRouter(tags=["forms"])
Admin = Annotated[Principal, Depends(require_scopes("forms:admin"))]
Platform = Annotated[SecretPlatform, Path(description="typeform, generic or google-ads.")]


class SecretList(BaseModel):
    secrets: list[SecretOut]


@router.get("/v1/forms/{form_id}/webhook-secrets")
async def list_webhook_secrets(form_id: FormId, request: Request, _: Admin) -> SecretList:
    """The form's own webhook secrets, as hints; platforms not listed use the service's."""
    async with intake(request).pool.acquire() as conn:
        if await forms_store.get_form(conn, form_id) is None:
            raise unknown_form(form_id)
        stored = await store.list_secrets(conn, form_id)
    now = datetime.now(UTC)
    return SecretList(secrets=[SecretOut.of(s, now=now) for s in stored])


@router.post("/v1/forms/{form_id}/webhook-secrets/{platform}")
async def rotate_webhook_secret(
    form_id: FormId,
    platform: Platform,
    request: Request,
    _: Admin,
    body: Annotated[SecretIn | None, Body()] = None,
) -> SecretOut:
    """Set or rotate the form's secret for a platform; the previous one stays valid a while."""
    body = body or SecretIn()
    secret = body.secret or new_secret()
    async with intake(request).pool.acquire() as conn, conn.transaction():
        if await forms_store.get_form(conn, form_id) is None:
            raise unknown_form(form_id)
        stored = await store.rotate_secret(
            conn, form_id, platform, secret, body.previous_valid_seconds
        )
    return SecretOut.of(stored, now=datetime.now(UTC), generated=body.secret is None)


@router.delete("/v1/forms/{form_id}/webhook-secrets/{platform}", status_code=204)
async def delete_webhook_secret(
    form_id: FormId, platform: Platform, request: Request, _: Admin
) -> Response:
    """Drop the form's own secret: the service-wide one (if set) applies again."""
    async with intake(request).pool.acquire() as conn:
        deleted = await store.delete_secret(conn, form_id, platform)
    if not deleted:
        raise Problem(
            404,
            "No such secret",
            f"form {form_id!r} has no own secret for {platform}",
            type_="urn:funnel:problem:not-found",
            errors=[{"field": "platform", "message": "no secret of the form's own"}],
        )
    return Response(status_code=204)
