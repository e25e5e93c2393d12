"""stage-tracker throughput: events per second through the real consumer, as a ratio to a bare
aiokafka consumer reading the same records in the same run.

The dataset (captures on funnel.lead-events, activities on funnel.activity-events, clicks on
funnel.touch-events; five events per lead, encoded with the contracts' encode()) is produced
once onto a private broker's contract topics. Then, each round in a rotated order:
- baseline: a bare AIOKafkaConsumer (fresh group, earliest, no auto-commit) reading the
  tracker's topics until it has seen every record; it decodes nothing and writes nothing;
- tracker (batched): the real InboxConsumer with the tracker's batch handler, as the service
  runs it: a poll's fetched records in one transaction, inbox rows in one statement, the
  leads' states read in a few queries and written set-based, every event through the machine
  in order (inbox, state, transitions, signals, outbox rows for stage.changed/lead.scored),
  with the service's polls in flight (FUNNEL_CONSUMER_POLLS_IN_FLIGHT, decision 0094: the
  next poll's leads read and moved while the one ahead is written and committed);
- tracker (serial): the same, one poll at a time (FUNNEL_CONSUMER_POLLS_IN_FLIGHT=1): what
  the pipeline adds, measured in the same run;
- tracker (per event): the same consumer and handler without the batch hook, the kit's
  record-by-record path (a savepoint and about ten statements per event): the design before
  the batch hook, measured in the same run;
each tracker run on a fresh, migrated database, until its inbox holds every event.

Each tracker run also reports this process's CPU time per event over the timed span (the
consumer runs in it; PostgreSQL and Kafka are other processes) and PostgreSQL's (every
backend of its server): on a busy machine events/s follow the load, CPU per event much less.
Every record carries a traceparent of its own, as the services' outboxes write them
(`--untraced`: none).

Run: `.venv/bin/python -m bench.tracker_throughput [--leads 1000] [--rounds 2]
[--targets bare,batched,serial,per_event] [--untraced]`.
Results: bench/results/tracker-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaProducer

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, log, median, tree_cpu_seconds, tree_cpu_used
from bench.consumer_bench import bare_consumer, fresh_database, produce
from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadCaptured,
    TouchClicked,
)
from funnel_devstack.stack import Stack, StackPorts
from funnel_servicekit.db import create_pool
from funnel_servicekit.gc_pauses import freeze_startup_heap, thaw
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.kafka import ensure_topics
from funnel_servicekit.telemetry import setup_tracing
from stage_tracker.app import MIGRATIONS
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.moves.consumer import HANDLED, TOPICS, EventHandler, poll_options
from stage_tracker.settings import TrackerSettings

TARGETS = ("bare", "batched", "serial", "per_event")
# Printed when both targets ran: name -> (numerator, denominator) of the medians.
RATIOS = {
    "ratio": ("batched", "bare"),
    "per_event_ratio": ("per_event", "bare"),
    "speedup": ("batched", "per_event"),
    "pipeline_speedup": ("batched", "serial"),
}
LABELS = {
    "bare": "bare aiokafka consumer",
    "batched": "stage-tracker, batched",
    "serial": "stage-tracker, batched, one poll at a time",
    "per_event": "stage-tracker, per event",
}


def dataset(leads: int) -> list[EventData]:
    t0 = datetime.now(UTC) - timedelta(days=1)
    events: list[EventData] = []
    for i in range(leads):
        lead, at = uuid4(), t0 + timedelta(seconds=i)
        events.append(
            LeadCaptured(
                lead_id=lead, submission_id=uuid4(), form_id="demo", funnel_id="digital-sales",
                email=f"bench{i}@example.com", captured_at=at,
            )
        )  # fmt: skip
        for k, kind in enumerate(("page_view", "pricing_viewed", "purchase_completed")):
            when = at + timedelta(minutes=k + 1)
            events.append(
                ActivityRecorded(
                    lead_id=lead, activity_id=uuid4(), activity_type=kind, occurred_at=when,
                    recorded_at=when,
                )
            )  # fmt: skip
        events.append(
            TouchClicked(lead_id=lead, touch_id=uuid4(), url="https://x.test", clicked_at=at)
        )
    return events


async def tracker_consumer(
    stack: Stack, total: int, *, batched: bool, serial: bool = False
) -> tuple[float, float, float]:
    """Events per second through the tracker's consumer, this process's CPU microseconds
    per event over the same span (the consumer runs here; PostgreSQL and Kafka do not), and
    PostgreSQL's (every backend's) CPU microseconds per event over it."""
    dsn = await fresh_database(stack, "tracker", MIGRATIONS)
    pool = await create_pool(dsn, "tracker", min_size=1, max_size=4)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    handler = EventHandler(FunnelRegistry(), "tracker", "stage-tracker")
    consumer = InboxConsumer(
        pool=pool,
        producer=producer,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"bench-tracker-{uuid4().hex[:8]}",
        topics=list(TOPICS),
        handler=handler,
        handled_types=HANDLED,
        batch_handler=handler.batch if batched else None,
        # As the service takes its polls when batched (`serial`: one at a time); the kit's
        # defaults (200 records, a call per partition) before the batch hook.
        **(
            {**poll_options(TrackerSettings()), **({"polls_in_flight": 1} if serial else {})}
            if batched
            else {"max_poll_records": 200}
        ),
    )
    # As the service starts (service_app): what exists before the first event is frozen out
    # of the collector's walks. Here that includes the bench's own dataset, which the service
    # does not hold: without this, every full collection walks 10,000 event models.
    freeze_startup_heap()
    task = asyncio.create_task(consumer.run())
    pg_pid = stack.postgres.pid
    assert pg_pid is not None
    try:
        started = None
        while (done := await pool.fetchval("SELECT count(*) FROM inbox")) < total:
            if task.done():
                task.result()
            if done and started is None:
                started, first = time.perf_counter(), int(done)
                cpu_started = time.process_time()
                pg_started = tree_cpu_seconds(pg_pid)
            await asyncio.sleep(0.05)
        if started is None:
            raise RuntimeError("the tracker finished before it could be timed; use more leads")
        elapsed = time.perf_counter() - started
        cpu_us = (time.process_time() - cpu_started) / (total - first) * 1e6
        pg_us = tree_cpu_used(pg_started, tree_cpu_seconds(pg_pid)) / (total - first) * 1e6
        return (total - first) / elapsed, cpu_us, pg_us
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        await pool.close()
        thaw()


def _fresh_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="funnel-bench-tracker-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user and must reach it
    return root


async def measure(
    leads: int, rounds: int, targets: tuple[str, ...] = TARGETS, *, traced: bool = True
) -> dict[str, Any]:
    root = _fresh_root()
    stack = Stack(root, StackPorts.free(), partitions=3, fast_postgres=False)
    try:
        await stack.start_infrastructure()
        await ensure_topics(stack.kafka_bootstrap, 3)
        events = dataset(leads)
        await produce(stack.kafka_bootstrap, events, traced=traced)
        log(f"produced {len(events)} events for {leads} leads")
        runs: dict[str, list[float]] = {name: [] for name in targets}
        cpu: dict[str, list[float]] = {name: [] for name in targets if name != "bare"}
        pg: dict[str, list[float]] = {name: [] for name in cpu}
        names = list(targets)
        for r in range(rounds):
            k = r % len(names)
            for which in names[k:] + names[:k]:  # rotated: no target always first
                if which == "bare":
                    rate = await bare_consumer(stack.kafka_bootstrap, TOPICS, len(events))
                else:
                    rate, cpu_us, pg_us = await tracker_consumer(
                        stack,
                        len(events),
                        batched=which != "per_event",
                        serial=which == "serial",
                    )
                    cpu[which].append(cpu_us)
                    pg[which].append(pg_us)
                    log(
                        f"round {r + 1} {which}: {cpu_us:.0f} µs of CPU per event, PostgreSQL "
                        f"{pg_us:.0f} µs (load average {os.getloadavg()[0]:.1f})"
                    )
                runs[which].append(rate)
                log(f"round {r + 1} {which}: {rate:.0f} ev/s")
        medians = {name: median(rates) for name, rates in runs.items()}
        result: dict[str, Any] = {
            "leads": leads,
            "events": len(events),
            "rounds": rounds,
            **{f"{name}_events_per_s": [round(x, 1) for x in runs[name]] for name in runs},
            **{f"{name}_median": round(medians[name], 1) for name in runs},
            **{f"{name}_cpu_us_per_event": [round(x, 1) for x in cpu[name]] for name in cpu},
            **{f"{name}_cpu_us_median": round(median(cpu[name]), 1) for name in cpu},
            **{f"{name}_postgres_cpu_us_per_event": [round(x, 1) for x in pg[name]] for name in pg},
            **{f"{name}_postgres_cpu_us_median": round(median(pg[name]), 1) for name in pg},
            "traced": traced,
        }
        for key, (a, b) in RATIOS.items():
            if a in medians and b in medians:
                result[key] = round(medians[a] / medians[b], 4)
        return result
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated subset of " + ", ".join(TARGETS) + " (e.g. `batched` alone)",
    )
    parser.add_argument(
        "--untraced",
        action="store_true",
        help="records without trace headers (the figures before 2026-12-06 were made so)",
    )
    args = parser.parse_args()
    targets = tuple(t for t in TARGETS if t in args.targets.split(","))
    if not targets:
        parser.error(f"--targets: choose among {', '.join(TARGETS)}")
    # Tracing as the service sets it up: spans recorded only with an exporter configured, or
    # with OTEL_TRACES_SAMPLER=always_on (run once with it to see what recording costs).
    setup_tracing("stage-tracker")
    result = asyncio.run(measure(args.leads, args.rounds, targets, traced=not args.untraced))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"tracker-{stamp}.json").write_text(json.dumps(result, indent=2))
    rows = "".join(
        f"| {LABELS[t]} | {result[f'{t}_median']} | {result[f'{t}_events_per_s']} |\n"
        for t in targets
    )
    rows += "".join(
        f"| {key.replace('_', ' ')} ({a} / {b}) | {result[key]} | |\n"
        for key, (a, b) in RATIOS.items()
        if key in result
    )
    cpu = ", ".join(
        f"{t} {result[f'{t}_cpu_us_median']} (PostgreSQL {result[f'{t}_postgres_cpu_us_median']})"
        for t in targets
        if t != "bare"
    )
    md = (
        f"# stage-tracker throughput, {stamp}\n\n"
        f"{result['events']} events ({result['leads']} leads x 5) on three topics, "
        f"{result['rounds']} rounds, medians; load average {os.getloadavg()[0]:.1f} at the end;"
        f" records {'with' if result['traced'] else 'without'} trace headers."
        "\n\n| target | events/s (median) | runs |\n| --- | ---: | --- |\n"
        + rows
        + (
            "\nCPU of the consumer's process per event (median µs; less sensitive to a busy "
            f"machine than events/s): {cpu}.\n"
            if cpu
            else ""
        )
    )
    (RESULTS_DIR / f"tracker-{stamp}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
