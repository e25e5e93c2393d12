"""RFC 9457 problem details (application/problem+json) for every error a service returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from funnel_servicekit.db import DATABASE_UNREACHABLE

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5
# A dependency that cannot be reached (the database restarting, a connection cut): the
# request may well succeed shortly, so it is a 503 with Retry-After, not a 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (ConnectionError, *DATABASE_UNREACHABLE)


class Problem(Exception):
    """An error with a status, a stable machine-readable type and the fields at fault."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.errors = errors or []
        self.headers = headers

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body


FieldError = dict[str, str]


def field_error(field: str, message: str, code: str = "value_error") -> FieldError:
    return {"field": field, "message": message, "code": code}


def field_problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    field: str,
    message: str,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
) -> Problem:
    """A problem with one field at fault (`errors: [{field, message}]`)."""
    return Problem(
        status,
        title,
        detail,
        type_=type_,
        errors=[{"field": field, "message": message}],
        headers=headers,
    )


def invalid_fields(errors: list[FieldError], title: str = "Invalid request") -> Problem:
    """422 naming every field at fault (each error a `field_error`)."""
    return Problem(
        422,
        title,
        "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        type_="urn:funnel:problem:validation",
        errors=list(errors),
    )


def invalid(field: str, message: str, title: str = "Invalid request") -> Problem:
    """422 naming the one field at fault."""
    return invalid_fields([field_error(field, message)], title)


def validation_problem(exc: ValidationError, title: str = "Invalid request") -> Problem:
    """A pydantic error as a 422 naming each field at fault (never echoing the input)."""
    return invalid_fields(
        [
            field_error(".".join(str(p) for p in e["loc"]) or "body", e["msg"], e["type"])
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ],
        title,
    )


def not_found(what: str, field: str, value: object, *, type_: str | None = None) -> Problem:
    """404 for an unknown resource, naming the path or query field that named it."""
    return field_problem(
        404,
        f"Unknown {what}",
        f"no {what} with id {value!r}",
        type_=type_ or "urn:funnel:problem:not-found",
        field=field,
        message=f"unknown {what}",
    )


def conflict(detail: str, *, field: str | None = None, type_: str | None = None) -> Problem:
    """409: the request is well formed but contradicts the current state."""
    errors = [{"field": field, "message": detail}] if field else None
    return Problem(
        409, "Conflict", detail, type_=type_ or "urn:funnel:problem:conflict", errors=errors
    )


def rate_limited(what: str, limit: object, retry_after: int) -> Problem:
    """429 with Retry-After: `what` (a client, a form) is over its `limit`."""
    return field_problem(
        429,
        "Too many requests",
        f"this {what} is over its limit of {limit}; retry in {retry_after}s",
        type_="urn:funnel:problem:rate-limited",
        field="rate",
        message=f"{what} limit {limit}",
        headers={"Retry-After": str(retry_after)},
    )


def unavailable(
    detail: str = "a dependency of this service cannot be reached; retry later",
    *,
    retry_after: int = RETRY_AFTER_SECONDS,
) -> Problem:
    """503 with Retry-After: the request may well succeed shortly."""
    return Problem(
        503,
        "Service unavailable",
        detail,
        type_="urn:funnel:problem:dependency-unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """The field at fault, without the location FastAPI puts first (`body`, `query`, ...).

    Only the leading element is a location: a field may itself be called `path` or `body`.
    """
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        field_error(_field(e.get("loc", ())), e.get("msg", "invalid"), e.get("type", "invalid"))
        for e in exc.errors()
    ]
    return problem_response(invalid_fields(errors), request)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    problem = Problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
    return problem_response(problem, request)


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "dependency unavailable",
        extra={"path": request.url.path, "error": f"{type(exc).__name__}: {exc}"[:300]},
    )
    return problem_response(unavailable(), request)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(Problem(500, "Internal error"), request)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a problem+json response."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for unavailable in UNAVAILABLE_ERRORS:
        app.add_exception_handler(unavailable, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)
