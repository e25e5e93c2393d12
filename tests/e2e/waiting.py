"""Polling with a deadline: how tests wait for asynchronous effects (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = 60,
    interval: float = 0.25,
) -> T:
    """Call `probe` until `done(result)`; return the last result either way."""
    deadline = time.monotonic() + timeout
    result = await probe()
    while not done(result) and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        result = await probe()
    return result


async def settled(
    probe: Callable[[], Awaitable[T]], *, quiet: float = 3.0, timeout: float = 60
) -> T:
    """Call `probe` until its result stops changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = await probe()
    since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        current = await probe()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last
