"""Playbooks through the internal API (scope touches:admin), in JSON or YAML."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from notifier import playbook_store
from notifier.catalog import default_playbooks
from notifier.channels.webhook_channel import WebhookChannel
from notifier.playbook_model import Playbook
from notifier.templates import TemplateProblem, check, shipped
from notifier.webhook_rules import RefusedDestination

router = APIRouter(tags=["playbooks"])
Admin = Annotated[Principal, Depends(require_scopes("touches:admin"))]
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


def _check_channel(playbook: Playbook, request: Request) -> None:
    """Templates render (with the line when not)."""
    if playbook.channel == "email":
        try:
            templates = playbook.templates or shipped(playbook.template)
        except KeyError as exc:
            raise _invalid([{"field": "template", "message": str(exc)}]) from exc
        try:
            check(templates, playbook.kind)
        except TemplateProblem as exc:
            field = f"templates.{exc.locale}.{exc.part}"
            error: dict[str, Any] = {"field": field, "message": exc.message}
            if exc.line is not None:
                error["line"] = exc.line
            raise _invalid([error]) from exc


async def _check_destination(playbook: Playbook, request: Request) -> None:
    """A webhook's host is on the allow-list and resolves to public addresses only (unless
    FUNNEL_WEBHOOK_ALLOW_PRIVATE_ADDRESSES); each send checks again (DNS may change)."""
    if playbook.webhook is None:
        return
    settings = request.app.state.runtime.settings
    channel = WebhookChannel(
        secret="",
        allowed_hosts=settings.webhook_allowed_hosts,
        allow_private=settings.webhook_allow_private_addresses,
        timeout=settings.webhook_timeout_seconds,
    )
    try:
        await channel.resolve(playbook.webhook.url)
    except RefusedDestination as exc:
        raise _invalid([{"field": "webhook.url", "message": str(exc)}]) from exc
    except OSError:
        pass  # not resolvable now (DNS not set up yet): every send resolves and checks again


def _view(stored: playbook_store.StoredPlaybook) -> dict[str, Any]:
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
async def list_playbooks(request: Request, _: Admin) -> dict[str, Any]:
    """Every effective playbook: the shipped defaults, each replaced by a saved one."""
    async with request.app.state.runtime.pool.acquire() as conn:
        found = await playbook_store.effective(conn)
    return {"playbooks": [_view(s) for s in found.values()]}


@router.get("/v1/playbooks/{name}")
async def get_playbook(name: str, request: Request, _: Admin) -> dict[str, Any]:
    """One effective playbook."""
    async with request.app.state.runtime.pool.acquire() as conn:
        found = (await playbook_store.effective(conn)).get(name)
    if found is None:
        raise Problem(404, "No such playbook", type_="urn:funnel:problem:not-found")
    return _view(found)


@router.put("/v1/playbooks/{name}")
async def put_playbook(name: str, request: Request, principal: Admin) -> dict[str, Any]:
    """Save a playbook (JSON or YAML); refused with the field (and template line) at fault."""
    playbook = await _parse(request, name)
    _check_channel(playbook, request)
    await _check_destination(playbook, request)
    async with request.app.state.runtime.pool.acquire() as conn:
        await playbook_store.save(conn, playbook, principal.name)
        found = (await playbook_store.effective(conn))[name]
    return _view(found)


@router.delete("/v1/playbooks/{name}", status_code=204)
async def delete_playbook(name: str, request: Request, _: Admin) -> None:
    """Remove a saved playbook (a shipped one of the same name comes back)."""
    async with request.app.state.runtime.pool.acquire() as conn:
        deleted = await playbook_store.delete(conn, name)
    if not deleted:
        detail = (
            "shipped playbooks are switched off with enabled: false"
            if (name in default_playbooks())
            else None
        )
        raise Problem(
            404, "No saved playbook of that name", detail, type_="urn:funnel:problem:not-found"
        )
