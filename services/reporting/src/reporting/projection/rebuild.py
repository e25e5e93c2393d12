"""`python -m reporting rebuild`: replay every topic from the start into fresh tables.

The projections are a pure function of each lead's events, so the replay ends with the same
numbers as the live tables, whatever the interleaving of the topics. The rebuild consumes
under a group of its own until it has reached the end offsets taken when it started, then,
with --swap, puts the rebuilt schema in place of the live one in one transaction.

Swap with the service's consumer stopped: the live group then resumes at its committed offsets,
which are at or before the rebuild's end, and the rebuilt inbox turns what it already holds
into duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge, start_http_server

from funnel_contracts.topics import ALL_TOPICS
from funnel_servicekit import migrations
from funnel_servicekit.db import connect, create_pool
from funnel_servicekit.kafka import create_producer
from funnel_servicekit.unit_of_work import Outbox, Transactions
from reporting.projection import service, store
from reporting.projection.consumer import projection_consumer
from reporting.projection.worker import FOLD_ROWS
from reporting.settings import MIGRATIONS, ReportingSettings

log = logging.getLogger(__name__)
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
REBUILD_LAG = Gauge("funnel_reporting_rebuild_lag", "Records the rebuild still has to replay")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schema", default=None, help="target schema (default: <schema>_rebuild)")
    parser.add_argument("--swap", action="store_true", help="replace the live schema when done")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after seconds")
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics (the rebuild's lag) while it runs"
    )


def _safe(schema: str) -> str:
    """Schema names go into SQL text (identifiers cannot be bound): only plain ones pass."""
    if not _SCHEMA.match(schema):
        raise SystemExit(f"not a plain schema name: {schema!r}")
    return schema


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """Where each partition of every funnel topic ends now: what the rebuild must reach."""
    # Subscribed without a group: start() fetches the topics' metadata, nothing is committed.
    probe = AIOKafkaConsumer(*ALL_TOPICS, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in ALL_TOPICS
            for p in sorted(probe.partitions_for_topic(topic) or ())
        ]
        if len({tp.topic for tp in partitions}) != len(ALL_TOPICS):
            raise SystemExit(f"not every funnel topic exists: found {partitions}")
        return dict(await probe.end_offsets(partitions))
    finally:
        await probe.stop()


async def lag(admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]) -> int:
    committed = await admin.list_consumer_group_offsets(group)
    done = {tp: meta.offset for tp, meta in committed.items()}
    return sum(max(end - max(done.get(tp, 0), 0), 0) for tp, end in ends.items())


async def rebuild(settings: ReportingSettings, schema: str, timeout: float) -> dict[str, int]:
    """Replay into `schema` (dropped and re-created first); returns what it counted."""
    if schema == settings.db_schema:
        raise SystemExit("the rebuild target must not be the live schema")
    # As the schema's owner (FUNNEL_MIGRATION_DATABASE_URL when set); the service's own role
    # then writes the rows, with the rights the live schema gives it.
    conn = await connect(settings.owner_database_url(), settings.db_schema)
    try:
        await store.drop_schema(conn, _safe(schema))
        await migrations.apply(conn, schema, MIGRATIONS)
        runtime = migrations.role_of(settings.database_url)
        if runtime is not None and runtime != migrations.role_of(settings.owner_database_url()):
            await migrations.grant_runtime(conn, schema, runtime)
    finally:
        await conn.close()
    bootstrap = settings.kafka_bootstrap_servers
    ends = await end_offsets(bootstrap)
    group = f"{settings.service_name}-rebuild-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(settings.database_url, schema, min_size=1, max_size=2)
    producer = create_producer(bootstrap, group)
    await producer.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    # The live service's consumer, on the rebuild's schema and group.
    consumer = projection_consumer(
        settings,
        pool=pool,
        producer=producer,
        group_id=group,
        outbox=Outbox(schema, settings.service_name),
    )
    task = asyncio.create_task(consumer.run())
    transactions = Transactions(pool, Outbox(schema, settings.service_name))
    started = time.monotonic()
    try:
        while True:
            await _fold_all(transactions)  # as the service's fold loop does, between polls
            behind = await lag(admin, group, ends)
            REBUILD_LAG.set(behind)
            log.info("rebuild progress", extra={"lag": behind})
            if behind == 0:
                break
            if task.done():
                task.result()
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"rebuild still {behind} records behind after {timeout}s")
            await asyncio.sleep(0.5)
        consumer.stop()
        await task
        await _fold_all(
            transactions, until_empty=True
        )  # the rebuilt tables hold every delta, none queued
        async with pool.acquire() as conn:
            events, leads = await store.projected_counts(conn)
        return {"records": sum(ends.values()), "events": events, "leads": leads}
    finally:
        consumer.stop()
        if not task.done():
            task.cancel()
        await admin.close()
        await producer.stop()
        await pool.close()


async def _fold_all(transactions: Transactions, *, until_empty: bool = False) -> None:
    """Fold the queued deltas: again while a fold came back full (the fold loop's rule), or
    until none is left (the consumer stopped)."""
    least = 1 if until_empty else FOLD_ROWS
    while await transactions.run(lambda uow: service.fold_queued(uow, FOLD_ROWS)) >= least:
        pass


async def swap(settings: ReportingSettings, schema: str) -> str:
    """Put the rebuilt schema in place of the live one; the old one is kept, renamed."""
    live, rebuilt = _safe(settings.db_schema), _safe(schema)
    retired = f"{live}_replaced_{time.strftime('%Y%m%d%H%M%S')}"
    conn = await connect(settings.owner_database_url(), "public")
    try:
        await store.swap_schemas(conn, live, rebuilt, retired)
    finally:
        await conn.close()
    return retired


async def command(settings: ReportingSettings, args: argparse.Namespace) -> None:
    schema = args.schema or f"{settings.db_schema}_rebuild"
    if args.metrics_port:  # a batch job: scraped while it runs, gone when it ends
        start_http_server(args.metrics_port, addr=settings.http_host)
    counted = await rebuild(settings, schema, args.timeout)
    message = f"rebuilt {schema}: {counted['events']} events, {counted['leads']} leads"
    if args.swap:
        retired = await swap(settings, schema)
        message += f"; now live as {settings.db_schema} (the old tables are in {retired})"
    print(message)
