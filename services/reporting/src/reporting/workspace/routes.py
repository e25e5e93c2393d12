"""`/workspace/api/...`: the workspace pages' same-origin way to the other services.

`GET /workspace/api/whoami` answers the calling key's name and scopes (the pages take
ownership as that name). `/workspace/api/{tracker|intake|notifier}/{path}` forwards an
allow-listed call (`models.ALLOWED`) with the caller's Authorization, Content-Type and
If-Match, and gives back the service's status, body, Content-Type and ETag unchanged; a
service that cannot be reached is a 503 (504 when it does not answer in time).
docs/decisions/0026-workspace-pages-call-through-reporting.md says why a pass-through.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.problems import Problem, field_problem, unavailable
from reporting.deps import Runtime
from reporting.workspace import service
from reporting.workspace.models import NotAllowed, Unreachable, allowed

router = APIRouter(tags=["workspace"])
# The workspace's callers: keys that may read leads (each service checks its own scopes too).
Caller = Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ))]
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/workspace/api/whoami")
async def whoami(caller: Caller) -> Response:
    """The calling key's name (what its moves, owners and notes are recorded as) and scopes."""
    return JSONResponse(service.whoami(caller), headers=NO_STORE)


def _refused(exc: NotAllowed, method: str) -> Problem:
    if exc.field == "method":
        status, title = 405, "Method not allowed"
    elif exc.field in ("service", "path"):
        status, title = 404, "Not a workspace call"
    else:
        status, title = 422, "Invalid request"
    return field_problem(
        status,
        title,
        f"{method}: {exc.message}",
        type_="urn:funnel:problem:not-a-workspace-call",
        field=exc.field,
        message=exc.message,
    )


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 past `limit` bytes (announced or sent)."""
    declared = request.headers.get("content-length", "")
    too_large = field_problem(
        413,
        "Body too large",
        f"a workspace call's body is at most {limit} bytes",
        field="body",
        message=f"at most {limit} bytes",
    )
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _pass(request: Request, runtime: Runtime, service_name: str, path: str) -> Response:
    method = request.method
    try:
        route = allowed(service_name, method, f"/{path}", set(request.query_params.keys()))
    except NotAllowed as exc:
        raise _refused(exc, method) from None
    settings = runtime.settings
    body = await _body(request, settings.workspace_max_body_bytes) if route.body else None
    call = service.upstream_call(
        settings,
        service_name,
        method,
        f"/{path}",
        tuple(request.query_params.multi_items()),
        {k.lower(): v for k, v in request.headers.items()},
        body,
    )
    try:
        answer = await service.forward(runtime.context.upstream.get(), service_name, call)
    except Unreachable as exc:
        if exc.timed_out:
            raise Problem(
                504,
                "Gateway timeout",
                f"{exc.service} did not answer within {settings.workspace_timeout_seconds}s",
                type_="urn:funnel:problem:dependency-timeout",
            ) from None
        raise unavailable(f"{exc.service} cannot be reached; retry later") from None
    return Response(answer.body, answer.status, headers={**answer.headers, **NO_STORE})


FORWARDED = "/workspace/api/{service_name}/{path:path}"


@router.get(FORWARDED, include_in_schema=False)
async def pass_get(
    request: Request, runtime: Runtime, _: Caller, service_name: str, path: str
) -> Any:
    return await _pass(request, runtime, service_name, path)


@router.post(FORWARDED, include_in_schema=False)
async def pass_post(
    request: Request, runtime: Runtime, _: Caller, service_name: str, path: str
) -> Any:
    return await _pass(request, runtime, service_name, path)


@router.put(FORWARDED, include_in_schema=False)
async def pass_put(
    request: Request, runtime: Runtime, _: Caller, service_name: str, path: str
) -> Any:
    return await _pass(request, runtime, service_name, path)


@router.patch(FORWARDED, include_in_schema=False)
async def pass_patch(
    request: Request, runtime: Runtime, _: Caller, service_name: str, path: str
) -> Any:
    return await _pass(request, runtime, service_name, path)
