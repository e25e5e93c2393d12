"""stage-tracker's HTTP API for funnel definitions: read, validate, draft, publish."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from stage_tracker import definitions_store
from stage_tracker.funnel_parsing import InvalidDefinition, parse_definition
from stage_tracker.funnels import FunnelDefinition

router = APIRouter(tags=["funnels"])
Admin = Annotated[Principal, Depends(require_scopes("funnels:admin"))]
Reader = Annotated[Principal, Depends(require_scopes("leads:read"))]


class DefinitionText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["yaml", "json"] = "yaml"
    source: str = Field(min_length=1, max_length=200_000, description="The definition text.")


def _parsed(body: DefinitionText, version: int = 1) -> FunnelDefinition:
    try:
        return parse_definition(body.source, version)
    except InvalidDefinition as invalid:
        raise Problem(
            422,
            "Invalid funnel definition",
            f"{len(invalid.errors)} error(s) in the definition",
            type_="urn:funnel:problem:invalid-funnel",
            errors=[e.as_dict() for e in invalid.errors],
        ) from None


def _summary(definition: FunnelDefinition) -> dict[str, Any]:
    return {
        "id": definition.id,
        "name": definition.name,
        "stages": list(definition.stage_names),
        "exits": ["stalled", "lost", "recycled"],
    }


def _not_found(funnel_id: str, version: int | None = None) -> Problem:
    what = f"{funnel_id} v{version}" if version else funnel_id
    return Problem(404, "Unknown funnel", f"no funnel {what}", type_="urn:funnel:problem:unknown")


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.runtime.pool


@router.get("/v1/funnels")
async def list_funnels(request: Request, _: Reader) -> dict[str, Any]:
    """Every funnel with its versions and the one new leads enter."""
    async with _pool(request).acquire() as conn:
        funnels = []
        for funnel_id in await definitions_store.funnel_ids(conn):
            versions = await definitions_store.versions(conn, funnel_id)
            published = [v["version"] for v in versions if v["status"] == "published"]
            funnels.append(
                {
                    "id": funnel_id,
                    "current_version": max(published) if published else None,
                    "versions": [
                        {"version": v["version"], "status": v["status"]} for v in versions
                    ],
                }
            )
    return {"funnels": funnels}


@router.get("/v1/funnels/{funnel_id}")
async def get_funnel(
    funnel_id: str,
    request: Request,
    _: Reader,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """One version of a funnel (the newest published one unless `version` is given)."""
    async with _pool(request).acquire() as conn:
        if version is None:
            version = await definitions_store.latest_published_version(conn, funnel_id)
            if version is None:
                raise _not_found(funnel_id)
        row = await definitions_store.get(conn, funnel_id, version)
    if row is None:
        raise _not_found(funnel_id, version)
    definition = parse_definition(row["source"], version)
    return {
        **_summary(definition),
        "version": version,
        "status": row["status"],
        "format": row["format"],
        "source": row["source"],
        "published_at": row["published_at"],
    }


@router.post("/v1/funnels/validate")
async def validate_funnel(body: DefinitionText, _: Admin) -> dict[str, Any]:
    """Check a definition; 422 lists every error with its line and field."""
    return {"valid": True, **_summary(_parsed(body))}


@router.post("/v1/funnels/{funnel_id}/drafts", status_code=201)
async def create_draft(
    funnel_id: str, body: DefinitionText, request: Request, who: Admin
) -> dict[str, Any]:
    """Save a valid definition as the funnel's next version, in draft."""
    definition = _parsed(body)
    if definition.id != funnel_id:
        raise Problem(
            422,
            "Funnel id mismatch",
            f"the definition's id is {definition.id!r}, the path says {funnel_id!r}",
            type_="urn:funnel:problem:invalid-funnel",
            errors=[{"field": "id", "line": None, "message": "must match the path"}],
        )
    async with _pool(request).acquire() as conn, conn.transaction():
        version = await definitions_store.create_draft(
            conn, funnel_id, body.source, body.format, who.name
        )
    return {"id": funnel_id, "version": version, "status": "draft"}


@router.post("/v1/funnels/{funnel_id}/versions/{version}/publish")
async def publish_funnel(
    funnel_id: str, version: int, request: Request, _: Admin
) -> dict[str, Any]:
    """Publish a draft: from now on new leads enter it; it never changes again."""
    async with _pool(request).acquire() as conn, conn.transaction():
        row = await definitions_store.get(conn, funnel_id, version)
        if row is None:
            raise _not_found(funnel_id, version)
        if row["status"] == "published" or not await definitions_store.publish(
            conn, funnel_id, version
        ):
            raise Problem(
                409,
                "Already published",
                f"{funnel_id} v{version} is published; publish a new draft instead",
                type_="urn:funnel:problem:published",
            )
    return {"id": funnel_id, "version": version, "status": "published"}
