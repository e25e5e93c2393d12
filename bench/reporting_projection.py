"""reporting's projection throughput: events per second through the real consumer (Kafka ->
inbox -> lead state -> aggregate deltas), as a ratio to a bare aiokafka consumer reading the
same records in the same run.

The dataset (`bench.reporting_dataset`: captures, stage changes, activities with orders,
renewals and refunds, touches sent/opened/clicked, resubmissions, re-entries, late events,
an erasure) is produced once onto a private broker's contract topics, encoded with the
contracts' encode(). Then, in alternating order (ABC CBA):
- baseline: a bare AIOKafkaConsumer (fresh group, earliest, no auto-commit, 200 records a
  poll like the kit) reading every funnel topic until it has seen every record; it decodes
  nothing and writes nothing;
- reporting: the service's own InboxConsumer, handlers and batch handler
  (`reporting.projection.service.project`: a partition batch's states loaded and its summed
  differences written set-based) on a fresh, migrated database with fsync on, until its
  inbox holds every event;
- reporting event by event: the same without the batch handler (the kit's one transaction
  per partition batch, a savepoint and `handle` per record).
Both are timed from their first record on (joining the group is not reading).

Run: `.venv/bin/python -m bench.reporting_projection [--leads 1500] [--rounds 2]`
(`--quick` leaves out the slow event-by-event target).
Results: bench/results/reporting-projection-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaProducer

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, log, median, tree_cpu_seconds, tree_cpu_used
from bench.consumer_bench import bare_consumer, fresh_database, produce
from bench.reporting_dataset import generate
from funnel_contracts.topics import ALL_TOPICS
from funnel_devstack.stack import Stack, StackPorts
from funnel_servicekit.db import create_pool
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.kafka import ensure_topics
from funnel_servicekit.telemetry import setup_tracing
from reporting.app import MIGRATIONS
from reporting.projection.consumer import HANDLED, handle, handle_batch

# CPU microseconds per event of each reporting run: its process (consumer and handler),
# and PostgreSQL's processes (every backend, the WAL writer, the checkpointer).
CPU: dict[str, list[float]] = {}


async def reporting_consumer(stack: Stack, total: int, batched: bool = True) -> float:
    dsn = await fresh_database(stack, "reporting", MIGRATIONS)
    pool = await create_pool(dsn, "reporting", min_size=1, max_size=4)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    consumer = InboxConsumer(
        pool=pool,
        producer=producer,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"bench-reporting-{uuid4().hex[:8]}",
        topics=ALL_TOPICS,
        handler=handle,
        handled_types=HANDLED,
        batch_handler=handle_batch if batched else None,
    )
    task = asyncio.create_task(consumer.run())
    postgres = stack.postgres.pid or 0
    own, server = 0.0, {}
    try:
        started, first = None, 0
        while (done := int(await pool.fetchval("SELECT count(*) FROM inbox"))) < total:
            if task.done():
                task.result()
            if done and started is None:
                started, first = time.perf_counter(), done
                own, server = time.process_time(), tree_cpu_seconds(postgres)
            await asyncio.sleep(0.05)
        if started is None:
            raise RuntimeError("reporting finished before it could be timed; use more leads")
        rate = (total - first) / (time.perf_counter() - started)
        name = "batched" if batched else "per_event"
        used = (time.process_time() - own, tree_cpu_used(server, tree_cpu_seconds(postgres)))
        CPU.setdefault(f"{name}_client_us", []).append(used[0] * 1e6 / (total - first))
        CPU.setdefault(f"{name}_postgres_us", []).append(used[1] * 1e6 / (total - first))
        return rate
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        await pool.close()


def _fresh_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="funnel-bench-reporting-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user and must reach it
    return root


async def measure(leads: int, rounds: int, per_event: bool = True) -> dict[str, Any]:
    root = _fresh_root()
    stack = Stack(root, StackPorts.free(), partitions=3, fast_postgres=False)
    try:
        await stack.start_infrastructure()
        await ensure_topics(stack.kafka_bootstrap, 3)
        events = generate(leads, seed=3).events
        await produce(stack.kafka_bootstrap, events)
        log(f"produced {len(events)} events for {leads} leads")
        targets = {
            "bare": lambda: bare_consumer(stack.kafka_bootstrap, ALL_TOPICS, len(events)),
            "batched": lambda: reporting_consumer(stack, len(events), batched=True),
            "per_event": lambda: reporting_consumer(stack, len(events), batched=False),
        }
        if not per_event:
            del targets["per_event"]
        rates: dict[str, list[float]] = {name: [] for name in targets}
        for r in range(rounds):
            names = list(targets)
            order = names if r % 2 == 0 else names[::-1]  # ABC CBA: the same moments for all
            for name in order:
                rates[name].append(await targets[name]())
                log(f"round {r + 1} {name}: {rates[name][-1]:.0f} events/s")
        medians = {name: round(median(values), 1) for name, values in rates.items()}
        return {
            "leads": leads,
            "events": len(events),
            "rounds": rounds,
            "events_per_s": {name: [round(x, 1) for x in v] for name, v in rates.items()},
            "median_events_per_s": medians,
            "ratio_batched_to_bare": round(medians["batched"] / medians["bare"], 4),
            "median_cpu_us_per_event": {k: round(median(v)) for k, v in CPU.items()},
            "ratio_per_event_to_bare": (
                round(medians["per_event"] / medians["bare"], 4) if per_event else None
            ),
        }
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leads", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="without the event-by-event target")
    args = parser.parse_args()
    # Tracing as the service sets it up: spans recorded only with an exporter configured, or
    # with OTEL_TRACES_SAMPLER=always_on (run once with it to see what recording costs).
    setup_tracing("reporting")
    result = asyncio.run(measure(args.leads, args.rounds, per_event=not args.quick))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"reporting-projection-{stamp}.json").write_text(json.dumps(result, indent=2))
    m, runs = result["median_events_per_s"], result["events_per_s"]
    md = (
        f"# reporting projection throughput, {stamp}\n\n"
        f"{result['events']} events ({result['leads']} generated leads) on the four funnel"
        " topics, 3 partitions each; PostgreSQL with fsync on.\n\n"
        "| target | events/s (median) | runs |\n| --- | ---: | --- |\n"
        f"| bare aiokafka consumer | {m['bare']} | {runs['bare']} |\n"
        f"| reporting, batch handler (the service) | {m['batched']} | {runs['batched']} |\n"
        f"| reporting, event by event (kit's per-partition transaction) "
        f"| {m.get('per_event', '-')} | {runs.get('per_event', '-')} |\n"
        f"| **ratio service / bare** | **{result['ratio_batched_to_bare']}** | |\n"
        f"| ratio event by event / bare | {result['ratio_per_event_to_bare'] or '-'} | |\n"
        "\nCPU µs per event (median): "
        + ", ".join(f"{k} {v}" for k, v in result["median_cpu_us_per_event"].items())
        + "\n"
    )
    (RESULTS_DIR / f"reporting-projection-{stamp}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
