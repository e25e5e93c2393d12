"""Intake latency at 70% of its maximum rate (open loop), as a ratio to the bare app's.

1. The maximum: wrk (or the httpx generator) against lead-intake, closed loop, as in
   intake_throughput.
2. An open-loop load at 70% of that rate for a fixed time: each request has its scheduled
   send time and its latency is measured from that time, so a stalled server is not hidden
   by the load generator waiting for it (no coordinated omission).
3. The same schedule against the bare FastAPI app in the same run, as the baseline.

Every service shares the machine's cores: at a rate the whole pipeline cannot sustain, the
consumers' backlog takes CPU from intake, and its latency shows it. `--share` lowers the rate.

`.venv/bin/python -m bench.intake_latency_at_rate [--seconds 15] [--share 0.7]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from typing import Any

import httpx

from bench.common import log, percentile, running_stack
from bench.intake_throughput import (
    FORM_PATH,
    _drain,
    _load,
    _wait_ready,
    pick_generator,
    start_baseline,
)
from funnel_devstack.ports import free_port


async def open_loop(url: str, rate: float, seconds: float, nonce: str) -> dict[str, Any]:
    """Send at a fixed rate regardless of answers; latency from each scheduled send time."""
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()
        total = int(rate * seconds)

        async def one(i: int) -> None:
            nonlocal failures
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            body = {"email": f"rate-{nonce}-{i}@example.com", "first_name": "Ada"}
            try:
                response = await client.post(url, json=body)
                ok = response.status_code == 202
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - scheduled) * 1000)
            else:
                failures += 1

        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - start
    return {
        "rate_target": rate,
        "rate_achieved": len(latencies) / elapsed,
        "sent": total,
        "failures": failures,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


async def measure(seconds: float, share: float, generator: str) -> dict[str, Any]:
    generator = pick_generator(generator)
    async with running_stack() as stack:
        port = free_port()
        baseline = start_baseline(port, stack.logs / "bench-baseline.log")
        try:
            await _wait_ready(f"http://127.0.0.1:{port}/readyz")
            intake = stack.url("lead-intake") + FORM_PATH
            base = f"http://127.0.0.1:{port}{FORM_PATH}"
            run = secrets.token_hex(4)
            pid = stack.services["lead-intake"].pid
            await _load(generator, intake, 2, 32, 1, run + "w", pid)
            peak = await _load(generator, intake, 10, 32, 1, run + "m", pid)
            rate = max(1.0, peak["rps"] * share)
            log(f"intake maximum {peak['rps']:.1f} req/s; open loop at {rate:.1f} req/s")
            await _drain(stack, 120)  # start from a quiet pipeline, not the peak's backlog
            at_rate = await open_loop(intake, rate, seconds, run + "i")
            drained = await _drain(stack, 120)
            on_baseline = await open_loop(base, rate, seconds, run + "b")
        finally:
            baseline.terminate()
            baseline.wait(10)
    return {
        "generator": generator,
        "intake_max_rps": peak["rps"],
        "share": share,
        "intake": at_rate,
        "baseline_same_rate": on_baseline,
        "pipeline_after_open_loop": drained,
        "p99_ratio_intake_to_baseline": at_rate["p99_ms"] / max(on_baseline["p99_ms"], 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--share", type=float, default=0.7)
    parser.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    args = parser.parse_args()
    result = asyncio.run(measure(args.seconds, args.share, args.generator))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
