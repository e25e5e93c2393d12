"""Capture latency: form post -> lead visible in the reporting snapshot, the whole pipeline.

Leads are posted open-loop at a steady rate (each post on its own task, so a slow answer never
delays the next). A poller reads the snapshot every ~20 ms and keeps each change of `total`
with the time its answer arrived. Afterwards the accepted leads are ranked by send time and
lead k is taken as visible at the first poll whose total reached (total before + k); its
latency is that time minus its send time. The baseline is one form post's round trip (HTTP
202) measured on the same posts, so the pipeline shows as a multiple of one request.

Run alone: `.venv/bin/python -m bench.capture_latency` (starts its own stack).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FORM_PATH, SNAPSHOT_PATH, log, percentile, running_stack
from funnel_devstack.stack import Stack


@dataclass
class Post:
    index: int
    sent: float
    answered: float = 0.0
    status: int = 0
    new_lead: bool = False
    error: str = ""


class SnapshotPoller:
    """Reads the snapshot on a fixed period; keeps (answer time, total) whenever total moves."""

    def __init__(self, client: httpx.AsyncClient, period: float) -> None:
        self.client = client
        self.period = period
        self.times: list[float] = []
        self.totals: list[int] = []
        self.round_trips: list[float] = []
        self.failures = 0
        self._stop = asyncio.Event()
        self.changed = asyncio.Event()

    async def total(self) -> int:
        response = await self.client.get(SNAPSHOT_PATH)
        response.raise_for_status()
        return int(response.json()["total"])

    async def run(self) -> None:
        next_tick = time.perf_counter()
        while not self._stop.is_set():
            sent = time.perf_counter()
            try:
                total = await self.total()
            except httpx.HTTPError:
                self.failures += 1
            else:
                answered = time.perf_counter()
                self.round_trips.append(answered - sent)
                if not self.totals or total != self.totals[-1]:
                    self.times.append(answered)
                    self.totals.append(total)
                    self.changed.set()
            next_tick = max(next_tick + self.period, time.perf_counter())
            await asyncio.sleep(next_tick - time.perf_counter())

    def stop(self) -> None:
        self._stop.set()

    def latest(self) -> int:
        return self.totals[-1] if self.totals else -1

    def first_time_reaching(self, total: int) -> float | None:
        """When the snapshot first showed at least `total` (totals only grow)."""
        i = bisect.bisect_left(self.totals, total)
        return self.times[i] if i < len(self.times) else None


async def _post(client: httpx.AsyncClient, post: Post, email: str) -> None:
    try:
        response = await client.post(FORM_PATH, json={"email": email})
    except httpx.HTTPError as exc:
        post.error = repr(exc)
        return
    post.answered = time.perf_counter()
    post.status = response.status_code
    if response.status_code == 202:
        post.new_lead = bool(response.json().get("new_lead", True))


async def _wait_total(poller: SnapshotPoller, target: int, timeout: float) -> bool:
    """Wait until the snapshot total reaches `target`; False on timeout."""
    deadline = time.perf_counter() + timeout
    while poller.latest() < target:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return False
        poller.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(poller.changed.wait(), remaining)
    return True


async def measure(
    stack: Stack,
    *,
    leads: int = 300,
    rate: float = 20.0,
    poll_period: float = 0.02,
    warmup_leads: int = 5,
    settle_timeout: float = 60.0,
) -> dict[str, Any]:
    log(
        f"capture latency: {leads} leads at {rate}/s, "
        f"snapshot polled every {poll_period * 1000:.0f} ms"
    )
    run_id = secrets.token_hex(4)
    auth = {"Authorization": f"Bearer {stack.admin_api_key}"}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with (
        httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30, limits=limits) as posts,
        httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10, headers=auth) as reads,
    ):
        poller = SnapshotPoller(reads, poll_period)
        poll_task = asyncio.create_task(poller.run())
        try:
            # Warm-up: the first leads after start-up pay for connections and consumer joins.
            await _wait_total(poller, 0, 30)
            before = poller.latest()
            warm = [Post(i, time.perf_counter()) for i in range(warmup_leads)]
            await asyncio.gather(
                *(_post(posts, p, f"warm-{run_id}-{p.index}@example.com") for p in warm)
            )
            warm_ok = sum(p.status == 202 and p.new_lead for p in warm)
            if not await _wait_total(poller, before + warm_ok, settle_timeout):
                log("  warm-up leads did not all show in the snapshot")
            start_total = poller.latest()

            sent: list[Post] = []
            tasks: list[asyncio.Task[None]] = []
            start = time.perf_counter()
            for i in range(leads):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                post = Post(i, time.perf_counter())
                sent.append(post)
                email = f"lat-{run_id}-{i}@example.com"
                tasks.append(asyncio.create_task(_post(posts, post, email)))
            await asyncio.gather(*tasks)
            posting_seconds = time.perf_counter() - start
            accepted = sorted(
                (p for p in sent if p.status == 202 and p.new_lead), key=lambda p: p.sent
            )
            complete = await _wait_total(poller, start_total + len(accepted), settle_timeout)
            # a little longer, to see a total that overshoots (leads counted twice)
            await asyncio.sleep(0.5)
        finally:
            poller.stop()
            await poll_task

    latencies: list[float] = []
    for rank, post in enumerate(accepted, start=1):
        seen = poller.first_time_reaching(start_total + rank)
        if seen is not None:
            latencies.append(seen - post.sent)
    post_rtts = [p.answered - p.sent for p in sent if p.status == 202]
    statuses: dict[str, int] = {}
    for p in sent:
        key = str(p.status) if p.status else "error"
        statuses[key] = statuses.get(key, 0) + 1

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000 if values else float("nan")

    post_p50 = ms(post_rtts, 50)
    result = {
        "leads": leads,
        "rate_per_second": rate,
        "achieved_rate_per_second": leads / posting_seconds if posting_seconds else 0.0,
        "poll_period_ms": poll_period * 1000,
        "accepted_new_leads": len(accepted),
        "statuses": statuses,
        "post_errors": sorted({p.error for p in sent if p.error})[:5],
        "visible": len(latencies),
        "all_visible": complete,
        "final_total_delta": poller.latest() - start_total,
        "pipeline_ms": {
            "p50": ms(latencies, 50),
            "p90": ms(latencies, 90),
            "p99": ms(latencies, 99),
            "max": ms(latencies, 100),
            "min": ms(latencies, 0.0001),
        },
        "post_202_ms": {"p50": post_p50, "p99": ms(post_rtts, 99)},
        "snapshot_read_ms": {"p50": ms(poller.round_trips, 50), "p99": ms(poller.round_trips, 99)},
        "snapshot_read_failures": poller.failures,
        "ratio_pipeline_p50_to_post_p50": ms(latencies, 50) / post_p50
        if post_p50
        else float("nan"),
        "ratio_pipeline_p99_to_post_p50": ms(latencies, 99) / post_p50
        if post_p50
        else float("nan"),
    }
    log(
        f"  pipeline p50 {result['pipeline_ms']['p50']:.0f} ms, p99 "
        f"{result['pipeline_ms']['p99']:.0f} ms; one post p50 {post_p50:.1f} ms; "
        f"{len(latencies)}/{len(accepted)} visible; statuses {statuses}"
    )
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--poll-ms", type=float, default=20.0)


async def _main(args: argparse.Namespace) -> None:
    async with running_stack() as stack:
        result = await measure(
            stack, leads=args.leads, rate=args.rate, poll_period=args.poll_ms / 1000
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    asyncio.run(_main(parser.parse_args()))
