"""The form registry (internal: `forms:admin`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ValidationError

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from lead_intake.api.context import FormId, intake, unknown_form, validation_problem
from lead_intake.forms import ID_PATTERN, FormCreate, FormIn, FormOut, FormPatch
from lead_intake.funnel_check import check_funnel
from lead_intake.store import forms as store

router = APIRouter(tags=["forms"])
Admin = Annotated[Principal, Depends(require_scopes("forms:admin"))]


class FormList(BaseModel):
    forms: list[FormOut]
    next_after: str | None = None


@router.post("/v1/forms", status_code=201)
async def create_form(body: FormCreate, request: Request, _: Admin) -> FormOut:
    """Register a new form; 409 when its id is taken, 422 when its funnel is not published."""
    ctx = intake(request)
    await check_funnel(ctx.settings, body.funnel_id)
    async with ctx.pool.acquire() as conn:
        form = await store.create_form(conn, body.id, body)
    ctx.forms.forget(body.id)
    if form is None:
        raise Problem(
            409,
            "Form exists",
            f"a form with id {body.id!r} exists; PUT or PATCH it instead",
            type_="urn:funnel:problem:conflict",
            errors=[{"field": "id", "message": "taken"}],
        )
    return FormOut.of(form)


@router.get("/v1/forms")
async def list_forms(
    request: Request,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(pattern=ID_PATTERN, description="The last id seen.")] = None,
) -> FormList:
    """Forms in id order, a page at a time."""
    async with intake(request).pool.acquire() as conn:
        forms = await store.list_forms(conn, limit=limit, after=after)
    return FormList(
        forms=[FormOut.of(f) for f in forms],
        next_after=forms[-1].id if len(forms) == limit else None,
    )


@router.get("/v1/forms/{form_id}")
async def get_form(form_id: FormId, request: Request, _: Admin) -> FormOut:
    """One form, with its public key."""
    async with intake(request).pool.acquire() as conn:
        form = await store.get_form(conn, form_id)
    if form is None:
        raise unknown_form(form_id)
    return FormOut.of(form)


@router.put("/v1/forms/{form_id}")
async def put_form(
    form_id: FormId, body: FormIn, request: Request, response: Response, _: Admin
) -> FormOut:
    """Create a form, or replace its whole definition (the public key stays)."""
    ctx = intake(request)
    await check_funnel(ctx.settings, body.funnel_id)
    async with ctx.pool.acquire() as conn:
        form, created = await store.save_form(conn, form_id, body)
    ctx.forms.forget(form_id)
    response.status_code = 201 if created else 200
    return FormOut.of(form)


@router.patch("/v1/forms/{form_id}")
async def patch_form(form_id: FormId, body: FormPatch, request: Request, _: Admin) -> FormOut:
    """Change some properties of a form; the result is validated as a whole."""
    ctx = intake(request)
    async with ctx.pool.acquire() as conn, conn.transaction():
        form = await store.get_form(conn, form_id)
        if form is None:
            raise unknown_form(form_id)
        try:
            definition = form.patched(body)
        except ValidationError as exc:
            raise validation_problem(exc, "Invalid form") from exc
        if definition.funnel_id != form.funnel_id:
            await check_funnel(ctx.settings, definition.funnel_id)
        saved, _created = await store.save_form(conn, form_id, definition)
    ctx.forms.forget(form_id)
    return FormOut.of(saved)


@router.post("/v1/forms/{form_id}/public-key/rotate")
async def rotate_public_key(form_id: FormId, request: Request, _: Admin) -> FormOut:
    """Give the form a new public key (pages must load embed.js again)."""
    ctx = intake(request)
    async with ctx.pool.acquire() as conn:
        form = await store.rotate_public_key(conn, form_id)
    ctx.forms.forget(form_id)
    if form is None:
        raise unknown_form(form_id)
    return FormOut.of(form)
