"""Where a record's time goes in `bench.pipeline_capacity`'s bare baseline, one step at a time.

The baseline's middle stage does, for every record, one after the other: INSERT and COMMIT
(a WAL flush: PostgreSQL runs with fsync on, as in the bench), `send_and_wait` of the record
to the next topic (acks=all, idempotent producer), and an offset commit to the group
coordinator. Nothing overlaps, so one stage carries at most 1000 / (the three added up)
records a second, whatever the cores have left. This runs the same calls, on a fresh
PostgreSQL and Kafka of the local stack (no services), `--records` times each step alone and
then the three chained as the stage chains them, and prints the milliseconds (wall and this
process's CPU) per call and the rate the chain allows.

`.venv/bin/python -m bench.baseline_hops [--records 500] [--broker-property NAME=VALUE ...]`
(a broker property to try, e.g. `group.coordinator.append.linger.ms=0`: how long the group
coordinator holds an offset commit for others to share its write)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import _fresh_root, log
from funnel_devstack import stack as stack_module
from funnel_devstack.stack import Stack, StackPorts


async def _timed(n: int, call: Any) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await call(i)
    return {
        "wall_ms": round((time.perf_counter() - wall) * 1000 / n, 3),
        "cpu_ms": round((time.process_time() - cpu) * 1000 / n, 3),
    }


async def measure(records: int, broker_properties: dict[str, str]) -> dict[str, Any]:
    if broker_properties:
        # The local stack makes its broker itself: this run's with the properties to try.
        stack_module.KafkaBroker = functools.partial(  # type: ignore[misc]
            stack_module.KafkaBroker, extra_properties=broker_properties
        )
    root = _fresh_root("funnel-bench-hops-")
    stack = Stack(root, StackPorts.free(), fast_postgres=False)
    await stack.start_infrastructure()
    try:
        bootstrap = stack.kafka_bootstrap
        tag = secrets.token_hex(3)
        topic = f"bench.hops.{tag}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()
        conn = await asyncpg.connect(stack.postgres.dsn)
        table = f"hops_{tag}"
        await conn.execute(f"CREATE TABLE {table} (lead_id uuid PRIMARY KEY, sent float8)")
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=table, enable_auto_commit=False
        )
        await consumer.start()
        await consumer.getmany(timeout_ms=2000)  # joined the group, partitions assigned
        tp = TopicPartition(topic, 0)
        try:

            async def keep(_: int) -> None:
                async with conn.transaction():
                    await conn.execute(
                        f"INSERT INTO {table} VALUES ($1, $2)",  # noqa: S608
                        uuid.uuid4(),
                        time.time(),
                    )

            async def produce(i: int) -> None:
                await producer.send_and_wait(topic, b"x" * 60, key=str(i).encode())

            async def commit(i: int) -> None:
                await consumer.commit({tp: i + 1})

            async def chained(i: int) -> None:
                await keep(i)
                await produce(i)
                await commit(i)

            for call in (keep, produce, commit):  # warm-up
                await _timed(20, call)
            result: dict[str, Any] = {
                "insert_and_commit": await _timed(records, keep),
                "send_and_wait": await _timed(records, produce),
                "offset_commit": await _timed(records, commit),
                "chained": await _timed(records, chained),
            }
        finally:
            await consumer.stop()
            await producer.stop()
            await conn.close()
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
    result["records"] = records
    result["broker_properties"] = broker_properties
    result["chain_allows_records_per_s"] = round(1000 / result["chained"]["wall_ms"], 1)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--broker-property", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    properties = dict(p.split("=", 1) for p in args.broker_property)
    result = asyncio.run(measure(args.records, properties))
    log(json.dumps(result))
    print(json.dumps(result, indent=2))
    print(
        f"one baseline stage, chained per record: {result['chained']['wall_ms']} ms "
        f"(at most {result['chain_allows_records_per_s']} records/s)"
    )


if __name__ == "__main__":
    main()
