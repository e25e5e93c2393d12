"""CORS per form: a browser may post only from the form's allowed origins."""

from __future__ import annotations

from fastapi import Request

from funnel_servicekit.problems import Problem
from lead_intake.forms import Form

ALLOWED_HEADERS = "Content-Type, Accept, Idempotency-Key, X-Funnel-Key"
EXPOSED_HEADERS = "Retry-After, Idempotent-Replayed"


def cors_headers(request: Request, form: Form) -> dict[str, str]:
    """The CORS answer for this request; a 403 problem for an origin the form refuses.

    Requests without an Origin header (servers, curl) are not browser cross-origin requests
    and pass; CORS protects visitors' browsers, not the endpoint.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return {}
    if not form.settings.allows_origin(origin):
        raise Problem(
            403,
            "Origin not allowed",
            f"form {form.id!r} does not accept posts from this origin",
            type_="urn:funnel:problem:origin-not-allowed",
            errors=[{"field": "origin", "message": "not in the form's allowed origins"}],
        )
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Vary": "Origin",
    }


def preflight_headers(cors: dict[str, str], methods: str = "POST, OPTIONS") -> dict[str, str]:
    return {
        **cors,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": "600",
    }


def with_cors(problem: Problem, cors: dict[str, str]) -> Problem:
    """Errors carry the CORS headers too, so the page's script can read the problem."""
    if cors:
        problem.headers = {**cors, **(problem.headers or {})}
    return problem
