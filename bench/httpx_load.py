"""Fallback load generator when wrk is missing: asyncio + httpx, in its own process.

`python bench/httpx_load.py URL --duration S --connections N --nonce X` posts form
submissions with unique emails over N keep-alive connections (one task each) for S seconds
and prints one line "BENCH_JSON {...}" with the same fields as bench/post.lua.
It is far slower than wrk per request, so it may itself be the bottleneck: the report says
which generator ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import httpx


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _load(url: str, duration: float, connections: int, nonce: str) -> dict[str, object]:
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        start = time.perf_counter()
        deadline = start + duration

        async def worker(wid: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                body = {"email": f"bench-{nonce}-{wid}-{n}@example.com"}
                t0 = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                except httpx.TimeoutException:
                    errors["timeout"] += 1
                    continue
                except httpx.HTTPError:
                    errors["read"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[str(response.status_code)] += 1

        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "requests": sum(statuses.values()),
        "duration_us": int(elapsed * 1e6),
        "statuses": dict(statuses),
        "errors": {k: errors.get(k, 0) for k in ("connect", "read", "write", "status", "timeout")},
        "latency_us": {
            "p50": int(_percentile(latencies, 50) * 1e6),
            "p90": int(_percentile(latencies, 90) * 1e6),
            "p99": int(_percentile(latencies, 99) * 1e6),
            "max": int(max(latencies, default=0) * 1e6),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--nonce", default=str(int(time.time())))
    args = parser.parse_args()
    result = asyncio.run(_load(args.url, args.duration, args.connections, args.nonce))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
