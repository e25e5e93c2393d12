"""What stage-tracker's routes are handed: its runtime, a pooled connection, the caller."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from funnel_servicekit.auth import ApiKeyAuth, Principal, Scope, require_scopes
from funnel_servicekit.deps import current_runtime, pooled_connection
from stage_tracker.runtime import TrackerRuntime

Runtime = Annotated[TrackerRuntime, Depends(current_runtime)]
# Declare the caller (Reader, Writer, Admin) before Conn in a route: FastAPI resolves
# dependencies in order, so a request without a valid key never takes a pooled connection.
Conn = Annotated[asyncpg.Connection, Depends(pooled_connection)]
Reader = Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(Scope.LEADS_WRITE))]
Admin = Annotated[Principal, Depends(require_scopes(Scope.FUNNELS_ADMIN))]


async def key_names(request: Request) -> frozenset[str]:
    """The names of the configured API keys ("admin" included): who may own a lead."""
    auth: ApiKeyAuth = request.app.state.auth
    return auth.names()


KeyNames = Annotated[frozenset[str], Depends(key_names)]
