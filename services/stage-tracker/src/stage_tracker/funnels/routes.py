"""stage-tracker's HTTP API for funnel definitions: read, validate, draft, publish."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from funnel_servicekit.problems import Problem
from stage_tracker.deps import Admin, Conn, Reader, Runtime
from stage_tracker.funnels import service
from stage_tracker.funnels.models.definition import EXITS, FunnelDefinition
from stage_tracker.funnels.models.parsing import InvalidDefinition, parse_definition

router = APIRouter(tags=["funnels"])
INVALID_FUNNEL = "urn:funnel:problem:invalid-funnel"


class DefinitionText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["yaml", "json"] = "yaml"
    source: str = Field(min_length=1, max_length=200_000, description="The definition text.")


def _invalid(invalid: InvalidDefinition) -> Problem:
    return Problem(
        422,
        "Invalid funnel definition",
        f"{len(invalid.errors)} error(s) in the definition",
        type_=INVALID_FUNNEL,
        errors=[e.as_dict() for e in invalid.errors],
    )


def _not_found(unknown: service.NoSuchVersion) -> Problem:
    return Problem(
        404, "Unknown funnel", f"no funnel {unknown}", type_="urn:funnel:problem:unknown"
    )


def _summary(definition: FunnelDefinition) -> dict[str, Any]:
    return {
        "id": definition.id,
        "name": definition.name,
        "stages": list(definition.stage_names),
        "exits": list(EXITS),
    }


@router.get("/v1/funnels")
async def list_funnels(_: Reader, conn: Conn) -> dict[str, Any]:
    """Every funnel with its versions and the one new leads enter."""
    return {"funnels": await service.list_funnels(conn)}


@router.get("/v1/funnels/{funnel_id}")
async def get_funnel(
    funnel_id: str,
    _: Reader,
    conn: Conn,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """One version of a funnel (the newest published one unless `version` is given)."""
    try:
        found = await service.funnel_version(conn, funnel_id, version)
    except service.NoSuchVersion as unknown:
        raise _not_found(unknown) from None
    row = found.row
    return {
        **_summary(found.definition),
        "version": row["version"],
        "status": row["status"],
        "format": row["format"],
        "source": row["source"],
        "published_at": row["published_at"],
    }


@router.post("/v1/funnels/validate")
async def validate_funnel(body: DefinitionText, _: Admin) -> dict[str, Any]:
    """Check a definition; 422 lists every error with its line and field."""
    try:
        return {"valid": True, **_summary(parse_definition(body.source))}
    except InvalidDefinition as invalid:
        raise _invalid(invalid) from None


@router.post("/v1/funnels/{funnel_id}/drafts", status_code=201)
async def create_draft(
    funnel_id: str, body: DefinitionText, who: Admin, runtime: Runtime
) -> dict[str, Any]:
    """Save a valid definition as the funnel's next version, in draft."""
    try:
        version = await service.create_draft(
            runtime.transactions, funnel_id, body.source, body.format, who.name
        )
    except InvalidDefinition as invalid:
        raise _invalid(invalid) from None
    except service.IdMismatch as mismatch:
        raise Problem(
            422,
            "Funnel id mismatch",
            str(mismatch),
            type_=INVALID_FUNNEL,
            errors=[{"field": "id", "line": None, "message": "must match the path"}],
        ) from None
    return {"id": funnel_id, "version": version, "status": "draft"}


@router.post("/v1/funnels/{funnel_id}/versions/{version}/publish")
async def publish_funnel(
    funnel_id: str, version: int, _: Admin, runtime: Runtime
) -> dict[str, Any]:
    """Publish a draft: from now on new leads enter it; it never changes again."""
    try:
        await service.publish(runtime.transactions, funnel_id, version)
    except service.NoSuchVersion as unknown:
        raise _not_found(unknown) from None
    except service.AlreadyPublished as published:
        raise Problem(
            409, "Already published", str(published), type_="urn:funnel:problem:published"
        ) from None
    return {"id": funnel_id, "version": version, "status": "published"}
