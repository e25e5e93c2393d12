"""What stage-tracker's routes are handed: its runtime, a pooled connection, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.deps import Conn, KeyNames, Reader, Writer, current_runtime
from stage_tracker.runtime import TrackerRuntime

__all__ = ["Admin", "Conn", "KeyNames", "Reader", "Runtime", "Writer"]

Runtime = Annotated[TrackerRuntime, Depends(current_runtime)]
Admin = Annotated[Principal, Depends(require_scopes(Scope.FUNNELS_ADMIN))]
