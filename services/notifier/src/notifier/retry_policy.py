"""When to try a touch again (pure): exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with jitter (0.5x-1.5x), never sooner than the server asked."""
    rand: float = (rng or random).random()
    delay: float = min(base * 2 ** max(attempt - 1, 0), cap) * (0.5 + rand)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap * 4))
    return delay
