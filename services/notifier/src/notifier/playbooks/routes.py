"""Playbooks through the internal API (scope touches:admin), in JSON or YAML."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from pydantic import ValidationError

from funnel_servicekit.problems import Problem, not_found
from notifier.deps import Admin, Conn, Runtime
from notifier.playbooks import service
from notifier.playbooks.models import Playbook, StoredPlaybook

router = APIRouter(tags=["playbooks"])
MAX_BODY = 512 * 1024


def _invalid(errors: list[dict[str, Any]]) -> Problem:
    return Problem(
        422,
        "Invalid playbook",
        "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        type_="urn:funnel:problem:validation",
        errors=errors,
    )


async def _parse(request: Request, name: str) -> Playbook:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Problem(413, "Playbook too large", type_="urn:funnel:problem:too-large")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            raw = yaml.safe_load(body.decode("utf-8"))
        elif content_type == "application/json":
            raw = yaml.safe_load(body.decode("utf-8")) if body else None  # JSON is YAML
        else:
            raise Problem(
                415,
                "Unsupported content type",
                "send application/json or application/yaml",
                type_="urn:funnel:problem:unsupported-media-type",
            )
    except RecursionError:  # deeply nested [[[[...: a client error, not a 500
        raise _invalid([{"field": "body", "message": "nested too deeply"}]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise _invalid([{"field": "body", "message": f"not YAML/JSON{where}"}]) from exc
    if not isinstance(raw, dict):
        raise _invalid([{"field": "body", "message": "a playbook is an object"}])
    if raw.setdefault("name", name) != name:
        raise _invalid([{"field": "name", "message": "must match the name in the path"}])
    try:
        return Playbook.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "body",
                "message": e["msg"],
                "code": e["type"],
            }
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise _invalid(errors) from exc


def _view(stored: StoredPlaybook) -> dict[str, Any]:
    return {
        **stored.playbook.model_dump(mode="json"),
        "origin": stored.origin,
        "version": stored.version,
        "updated_at": stored.updated_at,
        "warnings": [
            f"unknown activity type {t}" for t in stored.playbook.unknown_activity_types()
        ],
    }


@router.get("/v1/playbooks")
async def list_playbooks(_: Admin, conn: Conn) -> dict[str, Any]:
    """Every effective playbook: the shipped defaults, each replaced by a saved one."""
    found = await service.effective(conn)
    return {"playbooks": [_view(s) for s in found.values()]}


@router.get("/v1/playbooks/{name}")
async def get_playbook(name: str, _: Admin, conn: Conn) -> dict[str, Any]:
    """One effective playbook."""
    found = await service.one(conn, name)
    if found is None:
        raise not_found("playbook", "name", name)
    return _view(found)


@router.put("/v1/playbooks/{name}")
async def put_playbook(
    name: str, request: Request, principal: Admin, runtime: Runtime
) -> dict[str, Any]:
    """Save a playbook (JSON or YAML); refused with the field (and template line) at fault."""
    playbook = await _parse(request, name)
    settings = runtime.settings
    destinations = service.Destinations(
        settings.webhook_allowed_hosts,
        settings.webhook_allow_private_addresses,
        settings.webhook_timeout_seconds,
    )
    try:
        saved = await service.save(runtime.transactions, playbook, principal.name, destinations)
    except service.PlaybookInvalid as exc:
        raise _invalid(exc.errors) from exc
    return _view(saved)


@router.delete("/v1/playbooks/{name}", status_code=204)
async def delete_playbook(name: str, _: Admin, conn: Conn) -> None:
    """Remove a saved playbook (a shipped one of the same name comes back)."""
    if not await service.delete(conn, name):
        raise Problem(
            404,
            "No saved playbook of that name",
            service.not_deleted_because(name),
            type_="urn:funnel:problem:not-found",
        )
