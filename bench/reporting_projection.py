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
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import psutil
from aiokafka import AIOKafkaProducer

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    RESULTS_DIR,
    log,
    median,
    migrated_postgres,
    tree_cpu_seconds,
    tree_cpu_used,
)
from bench.consumer_bench import bare_consumer, fresh_database, produce
from bench.reporting_dataset import generate
from funnel_contracts import Envelope, EventData
from funnel_contracts.topics import ALL_TOPICS
from funnel_devstack.stack import Stack, StackPorts
from funnel_servicekit import migrations
from funnel_servicekit.db import connect, create_pool
from funnel_servicekit.gc_pauses import freeze_startup_heap, thaw
from funnel_servicekit.inbox import Delivery, InboxConsumer
from funnel_servicekit.kafka import ensure_topics
from funnel_servicekit.telemetry import setup_tracing
from funnel_servicekit.unit_of_work import Outbox
from reporting.app import MIGRATIONS
from reporting.projection import store
from reporting.projection.consumer import HANDLED, handle, handle_batch, handlers
from reporting.projection.worker import FOLD_ROWS, Fold
from reporting.settings import ReportingSettings

# CPU microseconds per event of each reporting run: its process (consumer, handler and the
# fold), and PostgreSQL's processes (every backend, the WAL writer, the checkpointer); and the
# rows each run inserted, updated or deleted per event (all of reporting's tables, and the
# ten conversion tables with their two queues).
CPU: dict[str, list[float]] = {}
ROWS: dict[str, list[float]] = {}
LOAD: dict[str, list[float]] = {}  # the 1-minute load average as each run began

# The previous shape of the conversion tables' keys (before migration 0011, docs/decisions/
# 0059): the same columns without the counters INCLUDEd, to measure what writing them costs.
_PLAIN_KEYS = {
    "entry_counts": "funnel_id, stage, dim, hour, value",
    "pair_conversions": "funnel_id, from_stage, dim, hour, to_stage, value",
}


async def _plain_keys(conn: asyncpg.Connection, schema: str = "reporting") -> None:
    for table, rollups in store.ROLLUPS.items():
        for name in (table, *(r for r, _ in rollups)):
            await conn.execute(
                f"ALTER TABLE {schema}.{name} DROP CONSTRAINT {name}_pkey,"
                f" ADD CONSTRAINT {name}_pkey PRIMARY KEY ({_PLAIN_KEYS[table]})"
            )


async def _rows_written(dsn: str) -> tuple[int, int]:
    """Rows inserted, updated and deleted in reporting's tables since the database was made:
    all of them, and the conversion tables' (read after the writers' connections closed, so
    their statistics are flushed)."""
    conversion = [
        name
        for table, rollups in store.ROLLUPS.items()
        for name in (table, f"{table}_queue", *(r for r, _ in rollups))
    ]
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """SELECT sum(n_tup_ins + n_tup_upd + n_tup_del)::bigint AS total,
                      (sum(n_tup_ins + n_tup_upd + n_tup_del)
                          FILTER (WHERE relname = ANY($1::text[])))::bigint AS conversion
               FROM pg_stat_user_tables WHERE schemaname = 'reporting'""",
            conversion,
        )
        return int(row["total"] or 0), int(row["conversion"] or 0)
    finally:
        await conn.close()


# The bench's targets: the service as it is (conversion deltas queued, folded by the fold loop
# running beside the consumer), and "inline", the projection before docs/decisions/0067 (every
# delta upserted into the quarter-hour rows and the four rollups in the consumer's
# transaction); each also with the conversion keys without INCLUDE (--include-cost).
FOLD_SECONDS = [float(ReportingSettings.model_fields["conversion_fold_seconds"].default)]
# Records a fetch brings across all partitions: the service's setting (an earlier revision
# without it ran with the kit's 200).
_POLL = ReportingSettings.model_fields.get("consumer_max_poll_records")
MAX_POLL_RECORDS = [int(_POLL.default) if _POLL is not None else 200]
INLINE_TABLES = set(store.ROLLUPS)  # store.INLINE for the "inline" targets


async def reporting_consumer(
    stack: Stack, total: int, batched: bool = True, *, inline: bool = False, include: bool = True
) -> float:
    dsn = await fresh_database(stack, "reporting", MIGRATIONS)
    if not include:
        conn = await asyncpg.connect(dsn)
        try:
            await _plain_keys(conn)
        finally:
            await conn.close()
    kept = set(store.INLINE)
    if inline:
        store.INLINE = set(INLINE_TABLES)
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
        max_poll_records=MAX_POLL_RECORDS[0],
    )
    fold = Fold(
        pool,
        schema="reporting",
        source="reporting",
        poll_seconds=FOLD_SECONDS[0],
    )
    # As the service starts (service_app): what exists before the first event is frozen out
    # of the collector's walks. Here that includes the bench's own dataset, which the service
    # does not hold: without this, every full collection walks some 7,000 event models.
    freeze_startup_heap()
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(fold.run())]
    postgres = stack.postgres.pid or 0
    own, server = 0.0, {}
    name = (
        ("batched" if batched else "per_event")
        + ("_inline" if inline else "")
        + ("" if include else "_no_include")
    )
    try:
        started, first = None, 0
        # Done when every event is in the inbox and no conversion delta is left in a queue.
        while True:
            done, queued = await pool.fetchrow(
                """SELECT (SELECT count(*) FROM inbox),
                          EXISTS (SELECT FROM entry_counts_queue)
                          OR EXISTS (SELECT FROM pair_conversions_queue)"""
            )
            if done >= total and not queued:
                break
            for task in tasks:
                if task.done():
                    task.result()
            if done and started is None:
                started, first = time.perf_counter(), done
                own, server = time.process_time(), tree_cpu_seconds(postgres)
            await asyncio.sleep(0.05)
        if started is None:
            raise RuntimeError("reporting finished before it could be timed; use more leads")
        rate = (total - first) / (time.perf_counter() - started)
        used = (time.process_time() - own, tree_cpu_used(server, tree_cpu_seconds(postgres)))
        CPU.setdefault(f"{name}_client_us", []).append(used[0] * 1e6 / (total - first))
        CPU.setdefault(f"{name}_postgres_us", []).append(used[1] * 1e6 / (total - first))
        return rate
    finally:
        consumer.stop()
        fold.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await producer.stop()
        await pool.close()
        thaw()
        store.INLINE = kept
        if started is not None:
            await asyncio.sleep(1.5)  # the closed backends' statistics flushed
            rows, conversion = await _rows_written(dsn)
            ROWS.setdefault(f"{name}_rows", []).append(rows / total)
            ROWS.setdefault(f"{name}_conversion_rows", []).append(conversion / total)


def _compressed(events: list[EventData], minutes: float) -> list[EventData]:
    """The dataset as live traffic would bring it: every moment of every event mapped, in
    the same order, onto the last `minutes` (the generated history spans 60 days and more,
    as a replay or a rebuild reads it)."""
    moments = [v for e in events for v in dict(e).values() if isinstance(v, datetime)]
    first, last = min(moments), max(moments)
    end = datetime.now(UTC)
    scale = timedelta(minutes=minutes) / (last - first)

    def moved(t: datetime) -> datetime:
        return end - (last - t) * scale

    return [
        e.model_copy(update={k: moved(v) for k, v in dict(e).items() if isinstance(v, datetime)})
        for e in events
    ]


async def handler_only(
    leads: int, rounds: int, include_cost: bool, span_minutes: float, batch: int, fold_every: int
) -> dict[str, Any]:
    """Without Kafka and its batching: the same events in the same batches of `batch` events
    (one transaction each, the batch handler as the consumer calls it, no inbox row), on one
    connection, each target on a schema of its own of one server, in alternating order. The
    queued targets fold every `fold_every` batches (and at the end) on the same connection.
    Per event: the connection's backend CPU and all of PostgreSQL's, the client's, the WAL
    bytes, and the rows written (from pg_stat_user_tables). The batches being the same,
    rows and WAL are exact; CPU is what a loaded machine blurs least."""
    events = generate(leads, seed=3).events
    if span_minutes:
        events = _compressed(events, span_minutes)
    deliveries = [Delivery("funnel.bench", Envelope.of(e, source="bench"), e) for e in events]
    batches = [deliveries[i : i + batch] for i in range(0, len(deliveries), batch)]
    names = ["batched", "batched_inline"]
    if include_cost:
        names += ["batched_no_include", "batched_inline_no_include"]
    out: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    async with migrated_postgres("reporting", MIGRATIONS, name="reporting-handler") as server:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                schema = f"{name}_{r}"
                conn = await connect(server.dsn, schema)
                try:
                    await migrations.apply(conn, schema, MIGRATIONS)
                    if "no_include" in name:
                        await _plain_keys(conn, schema)
                    _, handle_many = handlers(Outbox(schema, "reporting"))
                    inline = "inline" in name
                    saved = set(store.INLINE)
                    if inline:
                        store.INLINE = set(INLINE_TABLES)
                    backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
                    lsn = await conn.fetchval("SELECT pg_current_wal_lsn()")
                    tree = tree_cpu_seconds(server.pid or 0)
                    own, mine = backend.cpu_times(), time.process_time()
                    started = time.perf_counter()
                    try:
                        for i, b in enumerate(batches, 1):
                            async with conn.transaction():
                                await handle_many(conn, b)
                            if not inline and (i % fold_every == 0 or i == len(batches)):
                                while True:
                                    async with conn.transaction():
                                        if not await store.fold_queued(conn, FOLD_ROWS):
                                            break
                    finally:
                        store.INLINE = saved
                    seconds = time.perf_counter() - started
                    used = backend.cpu_times()
                    values = {
                        "events_per_s": len(events) / seconds,
                        "backend_us": (used.user + used.system - own.user - own.system)
                        * 1e6
                        / len(events),
                        "postgres_us": tree_cpu_used(tree, tree_cpu_seconds(server.pid or 0))
                        * 1e6
                        / len(events),
                        "client_us": (time.process_time() - mine) * 1e6 / len(events),
                        "wal_bytes": float(
                            await conn.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", lsn)
                        )
                        / len(events),
                    }
                finally:
                    await conn.close()
                await asyncio.sleep(1.5)  # the closed backend's statistics flushed
                conn = await asyncpg.connect(server.dsn)
                try:
                    values["rows"] = float(
                        await conn.fetchval(
                            """SELECT sum(n_tup_ins + n_tup_upd + n_tup_del)
                               FROM pg_stat_user_tables WHERE schemaname = $1""",
                            schema,
                        )
                    ) / len(events)
                finally:
                    await conn.close()
                for k, v in values.items():
                    out[name].setdefault(k, []).append(round(v, 1))
                log(f"round {r + 1} {name}: {values}")
    return {
        "mode": "handler only",
        "leads": leads,
        "events": len(events),
        "batch": batch,
        "fold_every_batches": fold_every,
        "span_minutes": span_minutes,
        "runs": out,
        "median": {n: {k: round(median(v), 1) for k, v in m.items()} for n, m in out.items()},
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def _fresh_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="funnel-bench-reporting-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user and must reach it
    return root


async def measure(
    leads: int,
    rounds: int,
    per_event: bool = True,
    include_cost: bool = False,
    span_minutes: float = 0,
) -> dict[str, Any]:
    root = _fresh_root()
    stack = Stack(root, StackPorts.free(), partitions=3, fast_postgres=False)
    try:
        await stack.start_infrastructure()
        await ensure_topics(stack.kafka_bootstrap, 3)
        events = generate(leads, seed=3).events
        if span_minutes:
            events = _compressed(events, span_minutes)
        await produce(stack.kafka_bootstrap, events)
        log(f"produced {len(events)} events for {leads} leads")
        n = len(events)
        targets: dict[str, Callable[[], Awaitable[float]]] = {
            "bare": lambda: bare_consumer(stack.kafka_bootstrap, ALL_TOPICS, n),
            "batched": lambda: reporting_consumer(stack, n),
            "batched_inline": lambda: reporting_consumer(stack, n, inline=True),
        }
        if include_cost:
            targets["batched_no_include"] = lambda: reporting_consumer(stack, n, include=False)
            targets["batched_inline_no_include"] = lambda: reporting_consumer(
                stack, n, inline=True, include=False
            )
        if per_event:
            targets["per_event"] = lambda: reporting_consumer(stack, n, batched=False)
        rates: dict[str, list[float]] = {name: [] for name in targets}
        for r in range(rounds):
            names = list(targets)
            order = names if r % 2 == 0 else names[::-1]  # ABC CBA: the same moments for all
            for name in order:
                LOAD.setdefault(name, []).append(round(os.getloadavg()[0], 1))
                rates[name].append(await targets[name]())
                log(f"round {r + 1} {name}: {rates[name][-1]:.0f} events/s")
        medians = {name: round(median(values), 1) for name, values in rates.items()}
        return {
            "leads": leads,
            "events": len(events),
            "rounds": rounds,
            "fold_seconds": FOLD_SECONDS[0],
            "max_poll_records": MAX_POLL_RECORDS[0],
            "span_minutes": span_minutes,
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "load_average_at_start": LOAD,
            "events_per_s": {name: [round(x, 1) for x in v] for name, v in rates.items()},
            "median_events_per_s": medians,
            "ratio_batched_to_bare": round(medians["batched"] / medians["bare"], 4),
            "ratio_batched_to_inline": round(medians["batched"] / medians["batched_inline"], 3),
            "median_cpu_us_per_event": {k: round(median(v)) for k, v in CPU.items()},
            "cpu_us_per_event": {k: [round(x) for x in v] for k, v in CPU.items()},
            "median_rows_per_event": {k: round(median(v), 2) for k, v in ROWS.items()},
            "ratio_per_event_to_bare": (
                round(medians["per_event"] / medians["bare"], 4) if per_event else None
            ),
        }
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


DESCRIBED = {
    "bare": "bare aiokafka consumer",
    "batched": "reporting, batch handler, deltas queued and folded (the service)",
    "batched_inline": "reporting, batch handler, rollups upserted inline (before 0067)",
    "batched_no_include": "the service, conversion keys without INCLUDE",
    "batched_inline_no_include": "rollups inline, conversion keys without INCLUDE",
    "per_event": "reporting, event by event (kit's per-partition transaction)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leads", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="without the event-by-event target")
    parser.add_argument(
        "--include-cost",
        action="store_true",
        help="also both shapes with the conversion keys without INCLUDE (migration 0011)",
    )
    parser.add_argument(
        "--fold-seconds",
        type=float,
        default=FOLD_SECONDS[0],
        help="the fold loop's pause (FUNNEL_CONVERSION_FOLD_SECONDS; default the setting's)",
    )
    parser.add_argument(
        "--span-minutes",
        type=float,
        default=0,
        help="map the events' moments onto the last N minutes (live traffic); 0: the"
        " generated 60-day history, as a replay reads it",
    )
    parser.add_argument(
        "--handler-only",
        action="store_true",
        help="without Kafka: fixed batches through the batch handler, rows and WAL per event",
    )
    parser.add_argument(
        "--max-poll-records",
        type=int,
        default=MAX_POLL_RECORDS[0],
        help="records a fetch brings across all partitions (default the service's setting)",
    )
    parser.add_argument("--batch", type=int, default=200, help="--handler-only's batch size")
    parser.add_argument(
        "--fold-every", type=int, default=5, help="--handler-only: batches between folds"
    )
    args = parser.parse_args()
    FOLD_SECONDS[0] = args.fold_seconds
    MAX_POLL_RECORDS[0] = args.max_poll_records
    if args.handler_only:
        found = asyncio.run(
            handler_only(
                args.leads,
                args.rounds,
                args.include_cost,
                args.span_minutes,
                args.batch,
                args.fold_every,
            )
        )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"reporting-projection-handler-{stamp}.json"
        path.write_text(json.dumps(found, indent=2))
        print(json.dumps({k: v for k, v in found.items() if k != "runs"}, indent=2))
        return
    # Tracing as the service sets it up: spans recorded only with an exporter configured, or
    # with OTEL_TRACES_SAMPLER=always_on (run once with it to see what recording costs).
    setup_tracing("reporting")
    result = asyncio.run(
        measure(
            args.leads,
            args.rounds,
            per_event=not args.quick,
            include_cost=args.include_cost,
            span_minutes=args.span_minutes,
        )
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"reporting-projection-{stamp}.json").write_text(json.dumps(result, indent=2))
    m, runs = result["median_events_per_s"], result["events_per_s"]
    md = (
        f"# reporting projection throughput, {stamp}\n\n"
        f"{result['events']} events ({result['leads']} generated leads) on the four funnel"
        " topics, 3 partitions each; PostgreSQL with fsync on;"
        f" {result['max_poll_records']} records a fetch; fold every"
        f" {result['fold_seconds']} s; moments"
        + (
            f" within the last {result['span_minutes']} min"
            if result["span_minutes"]
            else " over the generated 60-day history"
        )
        + ";"
        f" load average at the end {result['load_average']}.\n\n"
        "| target | events/s (median) | runs |\n| --- | ---: | --- |\n"
        + "".join(f"| {DESCRIBED[k]} | {m[k]} | {runs[k]} |\n" for k in m)
        + f"| **ratio service / bare** | **{result['ratio_batched_to_bare']}** | |\n"
        f"| **ratio service / inline rollups** | **{result['ratio_batched_to_inline']}** | |\n"
        f"| ratio event by event / bare | {result['ratio_per_event_to_bare'] or '-'} | |\n"
        "\nCPU µs per event (median): "
        + ", ".join(f"{k} {v}" for k, v in result["median_cpu_us_per_event"].items())
        + "\n\nLoad average as each run began: "
        + ", ".join(f"{k} {v}" for k, v in result["load_average_at_start"].items())
        + "\n\nRows written per event (median): "
        + ", ".join(f"{k} {v}" for k, v in result["median_rows_per_event"].items())
        + "\n"
    )
    (RESULTS_DIR / f"reporting-projection-{stamp}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
