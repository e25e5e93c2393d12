"""What routes are handed: the typed runtime, a pooled connection, the caller per scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.deps import Conn, Writer, current_runtime

__all__ = ["Admin", "ClientIp", "Conn", "KeyReader", "PeopleReader", "Runtime", "Writer"]
from lead_intake.runtime import IntakeRuntime


async def _client_ip(request: Request) -> str | None:
    """The caller's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else None


Runtime = Annotated[IntakeRuntime, Depends(current_runtime)]
ClientIp = Annotated[str | None, Depends(_client_ip)]
Admin = Annotated[Principal, Depends(require_scopes(Scope.FORMS_ADMIN))]
# Reads people; their contact details only with pii:read as well (checked by the route).
PeopleReader = Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ))]
KeyReader = Annotated[Principal, Depends(require_scopes(Scope.PII_DECRYPT))]
