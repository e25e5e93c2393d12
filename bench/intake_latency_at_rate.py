"""Intake latency at 70% of its maximum rate (open loop), as a ratio to the bare app's.

1. The maximum: wrk (or the httpx generator) against lead-intake, closed loop, as in
   intake_throughput.
2. An open-loop load at 70% of that rate for a fixed time: each request has its scheduled
   send time and its latency is measured from that time, so a stalled server is not hidden
   by the load generator waiting for it (no coordinated omission).
3. The same schedule against the bare FastAPI app in the same run, as the baseline.

The open-loop generator is vegeta when it is installed (bench/vegeta_load.py: compiled, its
own process), else bench/open_loop.py (raw asyncio streams, ~20x cheaper per request than
httpx, in the bench process; its own pauses add to the tail it measures). Every service
shares the machine's cores: at a rate the whole pipeline cannot sustain, the consumers'
backlog takes CPU from intake, and its latency shows it. `--share` lowers the rate;
`--intake-alone` stops the services after intake first.

`.venv/bin/python -m bench.intake_latency_at_rate [--seconds 15] [--share 0.7] [--intake-alone]
[--repeats 3] [--open-loop auto|vegeta|asyncio]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.common import FORM_PATH, log, median, running_stack
from bench.intake_throughput import (
    _drain,
    _load,
    _wait_ready,
    pick_generator,
    start_baseline,
)
from bench.open_loop import open_loop
from bench.vegeta_load import VEGETA_INSTALL, VEGETA_VERSION, vegeta_open_loop, vegeta_path
from funnel_devstack.ports import free_port

DOWNSTREAM = ("stage-tracker", "notifier", "reporting")


def _body(nonce: str) -> Any:
    def body_for(i: int) -> bytes:
        return json.dumps({"email": f"rate-{nonce}-{i}@example.com", "first_name": "Ada"}).encode()

    return body_for


async def _open_loop(
    binary: str | None, url: str, rate: float, seconds: float, body_for: Any
) -> dict[str, Any]:
    if binary:
        return await vegeta_open_loop(binary, url, rate, seconds, body_for)
    return (await open_loop(url, rate, seconds, body_for)).summary()


async def gc_pauses(service_url: str) -> dict[str, Any]:
    """The service's garbage-collector pauses so far (funnel_gc_pause_seconds), by generation."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(service_url + "/metrics")).text
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "funnel_gc_pause_seconds":
            continue
        for sample in family.samples:
            gen = out.setdefault("gen" + sample.labels["generation"], {})
            if sample.name.endswith("_count"):
                gen["count"] = int(sample.value)
            elif sample.name.endswith("_sum"):
                gen["total_ms"] = round(sample.value * 1000, 1)
            elif sample.name.endswith("_bucket") and sample.labels["le"] == "0.01":
                gen["under_10ms"] = int(sample.value)
    return out


async def measure(
    seconds: float,
    share: float,
    generator: str,
    *,
    intake_alone: bool = False,
    repeats: int = 3,
    open_loop_generator: str = "auto",
) -> dict[str, Any]:
    generator = pick_generator(generator)
    binary = vegeta_path() if open_loop_generator in ("auto", "vegeta") else None
    if open_loop_generator == "vegeta" and binary is None:
        raise SystemExit("vegeta not found: " + VEGETA_INSTALL)
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
            gc_before = await gc_pauses(stack.url("lead-intake"))
            at_rate, on_baseline, drained = [], [], []
            for i in range(repeats):
                if not intake_alone:
                    await _drain(stack, 120)  # start from a quiet pipeline, not the backlog
                body = _body(f"{run}i{i}")
                at_rate.append(await _open_loop(binary, intake, rate, seconds, body))
                log(f"  intake   {at_rate[-1]}")
                if not intake_alone:
                    drained.append(await _drain(stack, 120))
                body = _body(f"{run}b{i}")
                on_baseline.append(await _open_loop(binary, base, rate, seconds, body))
                log(f"  baseline {on_baseline[-1]}")
            gc_after = await gc_pauses(stack.url("lead-intake"))
        finally:
            baseline.terminate()
            baseline.wait(10)
    intake_p99 = median([r["p99_ms"] for r in at_rate])
    baseline_p99 = median([r["p99_ms"] for r in on_baseline])
    return {
        "generator": generator,
        "open_loop_generator": (
            f"vegeta {VEGETA_VERSION} (its own process)"
            if binary
            else "asyncio streams (bench/open_loop.py), in the bench process"
        ),
        "intake_alone": intake_alone,
        "intake_max_rps": peak["rps"],
        "share": share,
        "repeats": repeats,
        "intake_p99_ms_median": intake_p99,
        "intake_p99_ms_each": [r["p99_ms"] for r in at_rate],
        "baseline_p99_ms_median": baseline_p99,
        "intake": at_rate,
        "baseline_same_rate": on_baseline,
        "intake_gc_pauses_before": gc_before,
        "intake_gc_pauses_after": gc_after,
        "pipeline_after_open_loop": drained or None,
        "p99_ratio_intake_to_baseline": intake_p99 / max(baseline_p99, 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--share", type=float, default=0.7)
    parser.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="open-loop runs of each target")
    parser.add_argument(
        "--open-loop",
        choices=["auto", "vegeta", "asyncio"],
        default="auto",
        help="vegeta when installed (auto), else the asyncio generator",
    )
    parser.add_argument(
        "--intake-alone",
        action="store_true",
        help="stop stage-tracker, notifier and reporting first (intake, its relay, Kafka, PG)",
    )
    args = parser.parse_args()
    result = asyncio.run(
        measure(
            args.seconds,
            args.share,
            args.generator,
            intake_alone=args.intake_alone,
            repeats=args.repeats,
            open_loop_generator=args.open_loop,
        )
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
