"""Imports of existing contacts: CSV or JSON in, an import to follow out."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from lead_intake.common.body import JSON, media_type, read_spooled, unsupported
from lead_intake.deps import Conn, PeopleReader, Runtime, Writer
from lead_intake.imports import service
from lead_intake.imports.models import mapping_of
from lead_intake.imports.models.mapping import MappingInvalid
from lead_intake.submissions.models import idempotency_key

router = APIRouter(tags=["leads"])
CSV = "text/csv"


@router.post("/v1/leads/import", status_code=202)
async def import_leads(
    request: Request,
    runtime: Runtime,
    caller: Writer,
    form_id: Annotated[str | None, Query(max_length=100)] = None,
    on_existing: Annotated[str | None, Query()] = None,
    mapping: Annotated[str | None, Query(max_length=20_000)] = None,
    preset: Annotated[str | None, Query(max_length=20)] = None,
    idempotency: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Import existing contacts: `text/csv` (a header row; `?form_id=`, `mapping`) or
    `application/json` (`{"form_id", "leads": [...], "on_existing"}`), up to
    FUNNEL_IMPORT_MAX_ROWS rows. 202 with the import (done already when small); the same
    file again (same Idempotency-Key or content) answers 200 with the first import."""
    key = idempotency_key(idempotency)
    kind = media_type(request)
    settings = runtime.settings
    try:
        columns = mapping_of(mapping, preset)
    except MappingInvalid as exc:
        raise service.mapping_problem(exc) from None
    if kind == CSV:
        upload = service.upload_of(form_id, on_existing, columns, key, caller.name)
        body, sha = await read_spooled(request, settings.import_max_bytes)
        with body:
            started = await service.import_csv(runtime, upload, body, sha)
    elif kind == JSON:
        # Streamed as CSV is: spooled to a temporary file past 1 MiB, parsed as it goes.
        body, sha = await read_spooled(request, settings.import_max_bytes)
        with body:
            started = await service.import_json(
                runtime,
                body,
                sha,
                form_id=form_id,
                on_existing=on_existing,
                mapping=columns,
                idempotency_key=key,
                created_by=caller.name,
            )
    else:
        raise unsupported((CSV, JSON))
    body_out: dict[str, Any] = started.state.as_json()
    if started.lead_ids is not None:
        body_out["lead_ids"] = started.lead_ids
    return JSONResponse(body_out, status_code=202 if started.new else 200)


@router.get("/v1/imports/{import_id}")
async def get_import(import_id: UUID, _: PeopleReader, conn: Conn) -> dict[str, Any]:
    """An import as it goes: `status` (queued, running, done), `rows`, `imported`, `existing`,
    `updated`, `failed`, and `errors` (`row`, `field`, `message`; the first 1000)."""
    return (await service.state_of(conn, import_id)).as_json()
