"""What every service's `deps.py` builds on: the runtime of the app that serves a request,
and a pooled connection for the length of a request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import Request

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
