"""Reprocess dead letters: republish `<topic>.dlq` records to their topic, once each.

Use it after fixing what made a consumer dead-letter them. Every consumer group of the topic
sees the records again; groups that had processed them skip them through their inbox (same
ce_source and ce_id), the group that had failed handles them now. Progress is committed in the
consumer group `funnel-redrive.<topic>`, so a second run republishes only newer dead letters.

    python -m funnel_servicekit.redrive --bootstrap-servers HOST:PORT --topic funnel.lead-events \
        [--group stage-tracker] [--dry-run]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from funnel_contracts.topics import dead_letter_topic
from funnel_servicekit.kafka import client_security, create_producer

DLQ_HEADER_PREFIX = "dlq_"


@dataclass
class RedriveResult:
    topic: str
    read: int = 0
    republished: int = 0
    skipped_other_group: int = 0


def _group_of(headers: list[tuple[str, bytes]]) -> str | None:
    value = dict(headers).get("dlq_consumer_group")
    return value.decode() if value is not None else None


async def redrive(
    bootstrap_servers: str, topic: str, *, only_group: str | None = None, dry_run: bool = False
) -> RedriveResult:
    """Republish the dead letters of `topic` written since the last redrive."""
    dlq = dead_letter_topic(topic)
    result = RedriveResult(topic=topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=f"funnel-redrive.{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_security(),
    )
    producer = create_producer(bootstrap_servers, "funnel-redrive")
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(dlq, p) for p in await producer.partitions_for(dlq)]
        if not partitions:
            raise SystemExit(f"no topic {dlq}")
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp)
            start = committed if committed is not None else 0
            if start >= ends[tp]:
                continue
            consumer.seek(tp, start)
            position = start
            while position < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        break
                    position = record.offset + 1
                    result.read += 1
                    headers: list[tuple[str, bytes]] = list(record.headers or [])
                    if only_group is not None and _group_of(headers) != only_group:
                        result.skipped_other_group += 1
                        continue
                    if not dry_run:
                        await producer.send_and_wait(
                            topic, value=record.value, key=record.key,
                            headers=[(k, v) for k, v in headers
                                     if not k.startswith(DLQ_HEADER_PREFIX)],
                        )  # fmt: skip
                    result.republished += 1
            if not dry_run:
                await consumer.commit({tp: position})
    finally:
        await producer.stop()
        await consumer.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m funnel_servicekit.redrive",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True, help="the main topic, e.g. funnel.lead-events")
    parser.add_argument("--group", help="only dead letters of this consumer group")
    parser.add_argument("--dry-run", action="store_true", help="count, republish nothing")
    args = parser.parse_args(argv)
    result = asyncio.run(
        redrive(args.bootstrap_servers, args.topic, only_group=args.group, dry_run=args.dry_run)
    )
    out: dict[str, Any] = asdict(result)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
