"""What reporting's routes are handed: its runtime, a pooled connection, the reader's key."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.deps import current_runtime, pooled_connection
from reporting.runtime import ReportingRuntime

Runtime = Annotated[ReportingRuntime, Depends(current_runtime)]
Conn = Annotated[asyncpg.Connection, Depends(pooled_connection)]
Reader = Annotated[Principal, Depends(require_scopes(Scope.REPORTS_READ))]
