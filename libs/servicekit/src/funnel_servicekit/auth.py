"""Bearer API keys with scopes for the internal APIs; keys are compared by their hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from funnel_servicekit.problems import Problem


class Scope(StrEnum):
    """Every scope an API key can hold; a route may require only these."""

    LEADS_READ = "leads:read"
    LEADS_WRITE = "leads:write"
    FORMS_ADMIN = "forms:admin"
    FUNNELS_ADMIN = "funnels:admin"
    REPORTS_READ = "reports:read"
    TOUCHES_ADMIN = "touches:admin"
    # Reads a person's data key (lead-intake): only the services that must reach people.
    PII_DECRYPT = "pii:decrypt"
    # Reads a person's contact details (name, email, phone) in the leads workspace.
    PII_READ = "pii:read"


ALL_SCOPES: frozenset[str] = frozenset(s.value for s in Scope)


def hash_key(key: str) -> str:
    """The stored form of an API key (keys are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who called: the key's name and what it may do."""

    name: str
    scopes: frozenset[str]


KeyLookup = Callable[[str], Awaitable[Principal | None]]


class ApiKeyAuth:
    """Resolves a bearer key to a principal: the admin key, or one from a lookup (a table)."""

    def __init__(
        self,
        admin_key: str | None,
        lookup: KeyLookup | None = None,
        configured: dict[str, Principal] | None = None,
        *,
        admin_sha256: str | None = None,
    ) -> None:
        self._admin_hash = hash_key(admin_key) if admin_key else admin_sha256
        self._lookup = lookup
        self._configured = dict(configured or {})

    def names(self) -> frozenset[str]:
        """The names of the configured keys (and "admin"): who may own a lead or a task.

        Keys found by the lookup (a table) are not listed: only configured ones are named.
        """
        configured = {p.name for p in self._configured.values()}
        return frozenset(configured | ({"admin"} if self._admin_hash else set()))

    async def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                401,
                "Missing API key",
                "send Authorization: Bearer <key>",
                type_="urn:funnel:problem:unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token_hash = hash_key(token.strip())
        if self._admin_hash and hmac.compare_digest(token_hash, self._admin_hash):
            return Principal("admin", ALL_SCOPES)
        configured = self._configured.get(token_hash)
        if configured is not None:
            return configured
        if self._lookup is not None:
            found = await self._lookup(token_hash)
            if found is not None:
                return found
        raise Problem(
            401,
            "Invalid API key",
            type_="urn:funnel:problem:unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )


def new_api_key(name: str, scopes: list[str]) -> tuple[str, dict[str, object]]:
    """A fresh random key, and the entry to put in FUNNEL_API_KEYS (only the hash is kept)."""
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    key = f"fk_{secrets.token_urlsafe(32)}"
    return key, {"name": name, "sha256": hash_key(key), "scopes": sorted(scopes)}


async def authenticate(request: Request) -> Principal:
    """The caller's principal (401 without a valid key), for routes that choose their scope
    themselves; routes with a fixed scope use `require_scopes`."""
    auth: ApiKeyAuth = request.app.state.auth
    return await auth.principal(request)


def check_scopes(principal: Principal, *scopes: Scope) -> Principal:
    """`principal`, or a 403 naming the scopes it lacks."""
    missing = sorted(set(scopes) - principal.scopes)
    if missing:
        raise Problem(
            403,
            "Missing scope",
            f"this call needs {', '.join(missing)}",
            type_="urn:funnel:problem:forbidden",
        )
    return principal


# The key as OpenAPI describes it, so that the API docs (/docs) offer "Authorize" and send it
# with "Try it out". It only reads the header for the schema: `authenticate` decides.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="API key",
    description="An API key: `Authorization: Bearer <key>`. Each operation names the scopes "
    "its key needs.",
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def require_scopes(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, refused with 403 lacking a scope."""
    unknown = sorted(str(s) for s in scopes if s not in ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")

    async def dependency(request: Request, _: Bearer = None) -> Principal:
        return check_scopes(await authenticate(request), *scopes)

    dependency.required_scopes = scopes  # type: ignore[attr-defined]
    return dependency


def api_routes(app: Any) -> list[Any]:
    """Every route of `app` with a dependency tree, inside included routers and mounts too."""
    found, pending = [], list(getattr(app, "routes", ()))
    while pending:
        route = pending.pop(0)
        if getattr(route, "dependant", None) is not None:
            found.append(route)
        inner = getattr(route, "original_router", None) or route
        if inner is not route or not hasattr(route, "dependant"):
            pending += list(getattr(inner, "routes", ()) or ())
    return found


def _required_scopes(route: Any) -> tuple[str, ...]:
    stack, scopes = [route.dependant], []
    while stack:
        node = stack.pop()
        scopes += list(getattr(node.call, "required_scopes", ()))
        stack += node.dependencies
    return tuple(scopes)


def route_scopes(app: Any) -> dict[str, tuple[str, ...]]:
    """The scopes each route of `app` requires, read from its dependency tree."""
    found: dict[str, tuple[str, ...]] = {}
    for route in api_routes(app):
        scopes = _required_scopes(route)
        if scopes:
            found[f"{','.join(sorted(route.methods))} {route.path}"] = scopes
    return found


def describe_route_scopes(app: Any) -> None:
    """Name in each operation's OpenAPI description the scopes its key needs (what the code
    requires, so the docs cannot drift from it)."""
    for route in api_routes(app):
        scopes = sorted(set(map(str, _required_scopes(route))))
        if scopes and getattr(route, "include_in_schema", False):
            needed = ", ".join(f"`{scope}`" for scope in scopes)
            # Routers are shared by every app made of them (tests make many): said once.
            said = (route.description or "").split(_SCOPES_SAID)[0].rstrip()
            route.description = f"{said}\n\n{_SCOPES_SAID} {needed}".lstrip()


_SCOPES_SAID = "**Key scopes:**"


def check_route_scopes(app: Any) -> None:
    """Refuse to start when a route requires a scope that is not a `Scope` (a typo locks
    every caller out, or lets none in)."""
    for route, scopes in route_scopes(app).items():
        unknown = sorted(set(map(str, scopes)) - ALL_SCOPES)
        if unknown:
            raise RuntimeError(f"{route} requires unknown scopes: {', '.join(unknown)}")
