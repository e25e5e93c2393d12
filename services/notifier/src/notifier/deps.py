"""What the notifier's routes depend on: its runtime, a pooled connection, one principal alias
per scope, and the per-IP limit on the public links."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.deps import Conn, KeyNames, Reader, Writer, current_runtime
from notifier.runtime import NotifierRuntime

__all__ = ["Admin", "Conn", "KeyNames", "Reader", "Runtime", "Writer", "limit_link_requests"]

Runtime = Annotated[NotifierRuntime, Depends(current_runtime)]
Admin = Annotated[Principal, Depends(require_scopes(Scope.TOUCHES_ADMIN))]


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
