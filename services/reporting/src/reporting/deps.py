"""What reporting's routes are handed: its runtime, a pooled connection, the reader's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.deps import Conn, current_runtime
from reporting.runtime import ReportingRuntime

__all__ = ["Conn", "Reader", "Runtime"]

Runtime = Annotated[ReportingRuntime, Depends(current_runtime)]
Reader = Annotated[Principal, Depends(require_scopes(Scope.REPORTS_READ))]
