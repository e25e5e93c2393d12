"""What a rate-limit check costs now that it is a token bucket in PostgreSQL.

`.venv/bin/python -m bench.rate_limit_buckets --hits 3000`

A fresh PostgreSQL (the devstack's, fsync on) gets intake's schema (the kit's
`rate_limit_buckets` with it). In the same run, with the same pool:

- *baseline*: one `SELECT 1` through the pool, the cheapest round trip a request can make;
- *bucket*: `funnel_servicekit.rate_limit.take` (one upsert of the bucket's row), for
  addresses spread over many keys, and for one hot key (every hit on the same row, the
  per-form limit of a busy form);
- *memory*: the sliding window in process memory it replaced (`limits`, MemoryStorage).

Latency: one hit at a time, p50/p95; **ratio = bucket p50 / SELECT 1 p50** (in round trips).
Throughput: 16 concurrent callers; **ratio = hot-key hits/s / spread hits/s** (what the row
lock of one hot bucket costs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from bench.common import RESULTS_DIR, latency_stats, log, migrated_postgres, timed_ms
from funnel_servicekit.db import create_pool
from funnel_servicekit.rate_limit import take
from lead_intake.app import MIGRATIONS

CONCURRENCY = 16
LIMIT = parse("1000000/minute")  # never refused: every hit costs the same


async def _throughput(hit: Any, hits: int) -> float:
    per_caller = hits // CONCURRENCY

    async def caller(n: int) -> None:
        for i in range(per_caller):
            await hit(n, i)

    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(CONCURRENCY)))
    return per_caller * CONCURRENCY / (time.perf_counter() - started)


async def run(hits: int) -> dict[str, Any]:
    async with migrated_postgres("intake", MIGRATIONS, name="limits") as server:
        pool = await create_pool(server.dsn, "intake", min_size=CONCURRENCY, max_size=CONCURRENCY)
        memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        try:
            counter = iter(range(10**9))
            for _ in range(200):  # warm-up: connections, plans
                await take(pool, LIMIT, f"ip:warm:{next(counter)}")
                await pool.fetchval("SELECT 1")
            log("latency, one hit at a time")
            select_ms = await timed_ms(lambda: pool.fetchval("SELECT 1"), hits)
            spread_ms = await timed_ms(
                lambda: take(pool, LIMIT, f"ip:post:demo:10.0.{next(counter) % 50000}"), hits
            )
            hot_ms = await timed_ms(lambda: take(pool, LIMIT, "form:post:demo"), hits)
            memory_ms = await timed_ms(
                lambda: memory.hit(LIMIT, "ip", str(next(counter) % 50000)), hits
            )
            log(f"throughput, {CONCURRENCY} callers")
            select_rate = await _throughput(lambda n, i: pool.fetchval("SELECT 1"), hits)
            spread_rate = await _throughput(
                lambda n, i: take(pool, LIMIT, f"ip:post:demo:10.1.{n}.{i}"), hits
            )
            hot_rate = await _throughput(lambda n, i: take(pool, LIMIT, "form:post:hot"), hits)
        finally:
            await pool.close()
    select, spread, hot = (latency_stats(m, 3) for m in (select_ms, spread_ms, hot_ms))
    return {
        "hits": hits,
        "latency_ms": {
            "select_1": select,
            "bucket_spread": spread,
            "bucket_hot": hot,
            "memory_sliding_window": latency_stats(memory_ms, 4),
        },
        "ratio_bucket_p50_over_select_p50": round(spread["p50"] / select["p50"], 2),
        "ratio_hot_p50_over_select_p50": round(hot["p50"] / select["p50"], 2),
        "throughput_per_s": {
            "select_1": round(select_rate),
            "bucket_spread": round(spread_rate),
            "bucket_hot": round(hot_rate),
        },
        "ratio_hot_over_spread_throughput": round(hot_rate / spread_rate, 2),
        "ratio_spread_over_select_throughput": round(spread_rate / select_rate, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=3000)
    args = parser.parse_args()
    result = asyncio.run(run(args.hits))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "rate_limit_buckets.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
