"""Intake latency at 70% of its maximum rate (open loop), as a ratio to the bare app's.

1. The maximum: wrk (or the httpx generator) against lead-intake, closed loop, as in
   intake_throughput.
2. An open-loop load at 70% of that rate for a fixed time: each request has its scheduled
   send time and its latency is measured from that time, so a stalled server is not hidden
   by the load generator waiting for it (no coordinated omission).
3. The same schedule against the bare FastAPI app in the same run, as the baseline.

The open-loop generator is bench/open_loop.py (raw asyncio streams, ~20x cheaper per request
than httpx), in the bench process. Every service shares the machine's cores: at a rate the whole
pipeline cannot sustain, the consumers' backlog takes CPU from intake, and its latency shows it.
`--share` lowers the rate; `--intake-alone` stops the services after intake first.

`.venv/bin/python -m bench.intake_latency_at_rate [--seconds 15] [--share 0.7] [--intake-alone]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from typing import Any

from bench.common import FORM_PATH, log, running_stack
from bench.intake_throughput import (
    _drain,
    _load,
    _wait_ready,
    pick_generator,
    start_baseline,
)
from bench.open_loop import open_loop
from funnel_devstack.ports import free_port

DOWNSTREAM = ("stage-tracker", "notifier", "reporting")


def _body(nonce: str) -> Any:
    def body_for(i: int) -> bytes:
        return json.dumps({"email": f"rate-{nonce}-{i}@example.com", "first_name": "Ada"}).encode()

    return body_for


async def measure(
    seconds: float, share: float, generator: str, *, intake_alone: bool = False
) -> dict[str, Any]:
    generator = pick_generator(generator)
    async with running_stack() as stack:
        if intake_alone:
            # lead-intake with what it needs (PostgreSQL, Kafka, its relay), nothing after it.
            for service in DOWNSTREAM:
                stack.stop_service(service)
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
            if not intake_alone:
                await _drain(stack, 120)  # start from a quiet pipeline, not the peak's backlog
            at_rate = (await open_loop(intake, rate, seconds, _body(run + "i"))).summary()
            log(f"  intake   {at_rate}")
            drained = None if intake_alone else await _drain(stack, 120)
            on_baseline = (await open_loop(base, rate, seconds, _body(run + "b"))).summary()
            log(f"  baseline {on_baseline}")
        finally:
            baseline.terminate()
            baseline.wait(10)
    return {
        "generator": generator,
        "open_loop_generator": "asyncio streams (bench/open_loop.py), in the bench process",
        "intake_alone": intake_alone,
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
    parser.add_argument(
        "--intake-alone",
        action="store_true",
        help="stop stage-tracker, notifier and reporting first (intake, its relay, Kafka, PG)",
    )
    args = parser.parse_args()
    result = asyncio.run(
        measure(args.seconds, args.share, args.generator, intake_alone=args.intake_alone)
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
