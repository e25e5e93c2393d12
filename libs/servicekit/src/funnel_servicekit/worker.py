"""A background loop as the runtime sees it: a name, `run` until `stop` is called."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class Worker:
    """A background loop: `run` until `stop` is called."""

    name: str
    run: Callable[[], Awaitable[None]]
    stop: Callable[[], None]
