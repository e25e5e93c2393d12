"""What every service's `deps.py` builds on: the runtime of the app that serves a request,
a pooled connection for the length of a request, the callers of the shared scopes and the
names of the configured keys. A service's `deps.py` adds its typed `Runtime` and its own
scopes' aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request

from funnel_servicekit.auth import ApiKeyAuth, Principal, Scope, require_scopes
from funnel_servicekit.runtime import ServiceRuntime


def runtime_of(request: Request) -> ServiceRuntime[Any, Any]:
    """The runtime `create_service_app` put on the app (typed per service by its `deps.py`)."""
    runtime = request.app.state.runtime
    if not isinstance(runtime, ServiceRuntime):
        raise TypeError("the app was not built by funnel_servicekit.service_app")
    return runtime


async def current_runtime(request: Request) -> ServiceRuntime[Any, Any]:
    """`runtime_of` as a FastAPI dependency. It is `async def` on purpose: FastAPI runs a plain
    `def` dependency in a worker thread, a hop that costs more than the whole lookup."""
    return runtime_of(request)


async def pooled_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pool connection held until the response is ready (no transaction opened)."""
    async with runtime_of(request).pool.acquire() as conn:
        yield conn


async def key_names(request: Request) -> frozenset[str]:
    """The names of the configured API keys ("admin" included): who may own a lead or a task."""
    auth: ApiKeyAuth = request.app.state.auth
    return auth.names()


# Declare the caller (Reader, Writer, Admin) before Conn in a route: FastAPI resolves
# dependencies in order, so a request without a valid key never takes a pooled connection.
Conn = Annotated[asyncpg.Connection, Depends(pooled_connection)]
Reader = Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(Scope.LEADS_WRITE))]
KeyNames = Annotated[frozenset[str], Depends(key_names)]
