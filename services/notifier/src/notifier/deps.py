"""What the notifier's routes depend on: its runtime, a pooled connection, one principal alias
per scope, and the per-IP limit on the public links."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from funnel_servicekit.auth import ApiKeyAuth, Principal, Scope, require_scopes
from funnel_servicekit.deps import pooled_connection, runtime_of
from notifier.runtime import NotifierRuntime


async def _runtime(request: Request) -> NotifierRuntime:
    runtime: NotifierRuntime = runtime_of(request)
    return runtime


Runtime = Annotated[NotifierRuntime, Depends(_runtime)]
# Routes name their principal before `Conn`: a caller is refused before a connection is taken.
Conn = Annotated[asyncpg.Connection, Depends(pooled_connection)]
Reader = Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(Scope.LEADS_WRITE))]
Admin = Annotated[Principal, Depends(require_scopes(Scope.TOUCHES_ADMIN))]


async def _key_names(request: Request) -> frozenset[str]:
    auth: ApiKeyAuth = request.app.state.auth
    return auth.names()


# The names of the configured API keys: who a task may be handed to.
KeyNames = Annotated[frozenset[str], Depends(_key_names)]


async def limit_link_requests(request: Request, runtime: Runtime) -> None:
    """One hit on a public link (unsubscribe, open pixel, click redirect) for the caller's IP
    (uvicorn applies trusted proxies): the kit's token buckets in this service's schema, shared
    by its replicas, as lead-intake does for its public endpoints. The limit is generous:
    mail providers fetch pixels and follow links through a few shared proxy addresses, so it
    blunts floods without dropping real people's opens."""
    context = runtime.context
    client = request.client.host if request.client else "unknown"
    await context.link_limiter.check(
        runtime.pool, context.link_limit, "link", client, what="client"
    )
