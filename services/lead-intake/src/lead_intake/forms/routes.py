"""The form registry (internal: `forms:admin`) and each form's embed.js (public)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from lead_intake.deps import Admin, Runtime
from lead_intake.forms import service
from lead_intake.forms.models import (
    ID_PATTERN,
    FormCreate,
    FormId,
    FormIn,
    FormList,
    FormOut,
    FormPatch,
)

router = APIRouter()


@router.post("/v1/forms", status_code=201, tags=["forms"])
async def create_form(body: FormCreate, runtime: Runtime, _: Admin) -> FormOut:
    """Register a new form; 409 when its id is taken, 422 when its funnel is not published."""
    return await service.create_form(runtime, body)


@router.get("/v1/forms", tags=["forms"])
async def list_forms(
    runtime: Runtime,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(pattern=ID_PATTERN, description="The last id seen.")] = None,
) -> FormList:
    """Forms in id order, a page at a time."""
    return await service.list_forms(runtime, limit=limit, after=after)


@router.get("/v1/forms/{form_id}", tags=["forms"])
async def get_form(form_id: FormId, runtime: Runtime, _: Admin) -> FormOut:
    """One form, with its public key."""
    return await service.get_form(runtime, form_id)


@router.put("/v1/forms/{form_id}", tags=["forms"])
async def put_form(
    form_id: FormId, body: FormIn, runtime: Runtime, response: Response, _: Admin
) -> FormOut:
    """Create a form, or replace its whole definition (the public key stays)."""
    form, created = await service.save_form(runtime, form_id, body)
    response.status_code = 201 if created else 200
    return form


@router.patch("/v1/forms/{form_id}", tags=["forms"])
async def patch_form(form_id: FormId, body: FormPatch, runtime: Runtime, _: Admin) -> FormOut:
    """Change some properties of a form; the result is validated as a whole."""
    return await service.patch_form(runtime, form_id, body)


@router.post("/v1/forms/{form_id}/public-key/rotate", tags=["forms"])
async def rotate_public_key(form_id: FormId, runtime: Runtime, _: Admin) -> FormOut:
    """Give the form a new public key (pages must load embed.js again)."""
    return await service.rotate_public_key(runtime, form_id)


@router.get(
    "/v1/forms/{form_id}/embed.js",
    response_class=Response,
    responses={200: {"content": {"text/javascript": {}}}},
    tags=["public"],
)
async def embed_script(form_id: FormId, request: Request, runtime: Runtime) -> Response:
    """The form's embed script: UTM and visitor fields, submit in place, the inline message."""
    form = await service.public_form(runtime, form_id)
    script = service.embed_script(form, runtime.settings.public_base_url or str(request.base_url))
    return Response(
        script,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )
