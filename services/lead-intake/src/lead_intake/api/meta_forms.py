"""Meta lead forms mapped to our forms (internal: `forms:admin`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from lead_intake.api.context import intake, invalid
from lead_intake.meta_forms import META_FORM_ID_PATTERN, MetaForm, MetaFormIn
from lead_intake.store import forms as forms_store
from lead_intake.store import meta_forms as store

router = APIRouter(tags=["webhooks"])
Admin = Annotated[Principal, Depends(require_scopes("forms:admin"))]
MetaFormId = Annotated[
    str, Path(pattern=META_FORM_ID_PATTERN, description="The lead form's id at Meta.")
]


class MetaFormList(BaseModel):
    meta_forms: list[MetaForm]
    next_after: str | None = None


def _unknown(meta_form_id: str) -> Problem:
    return Problem(
        404,
        "Unknown Meta form",
        f"no mapping for the Meta form {meta_form_id!r}",
        type_="urn:funnel:problem:not-found",
        errors=[{"field": "meta_form_id", "message": "not mapped"}],
    )


@router.put("/v1/meta-forms/{meta_form_id}")
async def put_meta_form(
    meta_form_id: MetaFormId, body: MetaFormIn, request: Request, response: Response, _: Admin
) -> MetaForm:
    """Route a Meta lead form's leads to one of our forms, its questions to our fields."""
    async with intake(request).pool.acquire() as conn, conn.transaction():
        if await forms_store.get_form(conn, body.form_id) is None:
            raise invalid([{"field": "form_id", "message": "unknown form"}], "Invalid mapping")
        saved, created = await store.save_meta_form(conn, meta_form_id, body)
    response.status_code = 201 if created else 200
    return saved


@router.get("/v1/meta-forms")
async def list_meta_forms(
    request: Request,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(pattern=META_FORM_ID_PATTERN)] = None,
) -> MetaFormList:
    """Mapped Meta lead forms in id order, a page at a time."""
    async with intake(request).pool.acquire() as conn:
        found = await store.list_meta_forms(conn, limit=limit, after=after)
    return MetaFormList(
        meta_forms=found, next_after=found[-1].meta_form_id if len(found) == limit else None
    )


@router.get("/v1/meta-forms/{meta_form_id}")
async def get_meta_form(meta_form_id: MetaFormId, request: Request, _: Admin) -> MetaForm:
    """One Meta lead form's mapping."""
    async with intake(request).pool.acquire() as conn:
        found = await store.get_meta_form(conn, meta_form_id)
    if found is None:
        raise _unknown(meta_form_id)
    return found


@router.delete("/v1/meta-forms/{meta_form_id}", status_code=204)
async def delete_meta_form(meta_form_id: MetaFormId, request: Request, _: Admin) -> Response:
    """Forget a mapping: the Meta form's next leads join the service-wide Meta form."""
    async with intake(request).pool.acquire() as conn:
        if not await store.delete_meta_form(conn, meta_form_id):
            raise _unknown(meta_form_id)
    return Response(status_code=204)
