"""Rate limits on public endpoints: token buckets in the service's PostgreSQL schema, and the
one 429 answer (problem+json with Retry-After) when a caller is over its limit.

A limit `N/period` is a bucket of N tokens refilled at N per period: a burst of N passes,
then one request per period/N. Every replica counts in the same row (one statement, atomic
under concurrency), and a restart forgets nothing (docs/decisions/0042). The `limits`
library still parses the `10/minute` notation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import asyncpg
from limits import RateLimitItem, parse

from funnel_servicekit.problems import rate_limited

UNLIMITED = "unlimited"
# One check in this many also deletes buckets that are full again (as good as absent).
SWEEP_ONE_IN = 200


def parse_limit(spec: str | None) -> RateLimitItem | None:
    """`300/minute` as a limit; None (no limit) for `unlimited` or nothing."""
    return None if spec is None or spec == UNLIMITED else parse(spec)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    tokens: float
    retry_after: int


_TAKE = """
INSERT INTO rate_limit_buckets AS b (key, tokens, allowed, updated_at, full_at)
VALUES ($1, $2::float8 - 1, true, clock_timestamp(),
        clock_timestamp() + make_interval(secs => $4))
ON CONFLICT (key) DO UPDATE SET
    allowed = LEAST($2::float8, b.tokens
              + extract(epoch FROM EXCLUDED.updated_at - b.updated_at)::float8 * $3) >= 1,
    tokens = LEAST($2::float8, b.tokens
             + extract(epoch FROM EXCLUDED.updated_at - b.updated_at)::float8 * $3)
             - CASE WHEN LEAST($2::float8, b.tokens
                    + extract(epoch FROM EXCLUDED.updated_at - b.updated_at)::float8 * $3) >= 1
               THEN 1 ELSE 0 END,
    updated_at = EXCLUDED.updated_at,
    full_at = EXCLUDED.full_at
RETURNING allowed, tokens
"""

# Up to 1,000 buckets full again, deleted. `now()` (the statement's start: it runs alone), not
# `clock_timestamp()`: a volatile function cannot bound a range of the full_at index, so the
# sweep would read the table until it found 1,000 (docs/decisions/0086).
SWEEP = """DELETE FROM rate_limit_buckets WHERE key = ANY(ARRAY(
    SELECT key FROM rate_limit_buckets WHERE full_at < now() LIMIT 1000))"""


async def take(pool: asyncpg.Pool, item: RateLimitItem, key: str) -> Verdict:
    """Take one token from `key`'s bucket for `item` (a bucket of its own per limit)."""
    capacity = float(item.amount)
    window = float(item.get_expiry())
    rate = capacity / window
    bucket = f"{key}|{item.amount}/{item.get_expiry()}"
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_TAKE, bucket, capacity, rate, window)
        if random.randrange(SWEEP_ONE_IN) == 0:  # noqa: S311 - not a secret
            await conn.execute(SWEEP)
    assert row is not None
    tokens = float(row["tokens"])
    retry_after = 0 if row["allowed"] else max(1, math.ceil((1 - tokens) / rate))
    return Verdict(bool(row["allowed"]), tokens, retry_after)


class RateLimiter:
    """Counts hits per key against limits in the pool's schema; a 429 Problem past a limit."""

    async def check(
        self, pool: asyncpg.Pool, item: RateLimitItem | None, *keys: str, what: str
    ) -> None:
        """Count one hit for `keys`; raise the 429 Problem when they are over `item`.

        `what` names the caller in the answer ("client", "form").
        """
        if item is None:
            return
        verdict = await take(pool, item, ":".join(keys))
        if not verdict.allowed:
            raise rate_limited(what, item, verdict.retry_after)
