"""The rate limits' sweep of full buckets reads a range of the full_at index, not the table
(decision 0086): among 5,000 live buckets, a hit that sweeps deletes the 5 full ones and no
other, and the sweep's plan, generic as each connection keeps it, reads no table whole."""

from __future__ import annotations

import json

import pytest
from limits import parse

from funnel_devstack.stack import Stack
from funnel_servicekit import rate_limit
from tests.integration.kit_support import isolated_db

pytestmark = pytest.mark.integration


async def test_a_sweep_deletes_the_full_buckets_through_the_index(
    infra: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with isolated_db(infra.postgres.dsn) as db:
        await db.pool.execute(
            """INSERT INTO rate_limit_buckets (key, tokens, allowed, updated_at, full_at)
               SELECT 'live-' || g, 1, true, now(), now() + interval '1 hour'
               FROM generate_series(1, 5000) g
               UNION ALL
               SELECT 'full-' || g, 1, true, now() - interval '2 hours', now() - interval '1 hour'
               FROM generate_series(1, 5) g"""
        )
        await db.pool.execute("ANALYZE rate_limit_buckets")
        monkeypatch.setattr(rate_limit.random, "randrange", lambda n: 0)  # this hit sweeps

        verdict = await rate_limit.take(db.pool, parse("10/minute"), "caller")

        assert verdict.allowed
        left = {r["key"] for r in await db.pool.fetch("SELECT key FROM rate_limit_buckets")}
        assert not {k for k in left if k.startswith("full-")}
        assert len(left) == 5001  # every live bucket and the caller's
        async with db.pool.acquire() as conn:
            await conn.execute(f"PREPARE sweep AS {rate_limit.SWEEP}")
            raw = await conn.fetchval("EXPLAIN (FORMAT JSON) EXECUTE sweep")
            await conn.execute("DEALLOCATE sweep")
        plan = json.dumps(json.loads(raw) if isinstance(raw, str) else raw)
        assert '"Seq Scan"' not in plan
        assert "rate_limit_buckets_full_at" in plan
