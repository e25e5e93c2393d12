"""lead-intake as its own process on a prepared stack, with the one service it calls."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from funnel_devstack.stack import Stack


@contextlib.asynccontextmanager
async def intake_with_tracker(stack: Stack) -> AsyncIterator[str]:
    """lead-intake's URL; stage-tracker runs beside it, since saving a form asks it whether
    the form's funnel is published (decision 0019)."""
    stack.start_service("stage-tracker")
    stack.start_service("lead-intake")
    try:
        await stack.wait_service_ready("stage-tracker")
        await stack.wait_service_ready("lead-intake")
        yield stack.url("lead-intake")
    finally:
        stack.stop_service("lead-intake")
        stack.stop_service("stage-tracker")
