"""Rebuild the tracker from the topics: read them from the start, in event-time order.

Kafka orders a lead's events within one topic only; the live consumer meets the three topics
interleaved as they arrive. To rebuild exactly what the live consumer built, the rebuild merges
the partitions by the CloudEvents time (each partition's own order kept) and feeds every event
through the same handler and inbox. The tracker's own command topic is read too: moves made by
people and by the stall timer are made again at their place in time
(stage_tracker.moves.models.commands). What the rebuild would publish again was published by
the live run: the rebuild leaves the outbox as it found it. At the end the consumer group's
offsets are set to where the rebuild stopped, so the live consumer carries on from there.
(`python -m stage_tracker rebuild`; `replay` is the same command's older name.)
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from funnel_contracts import DecodeError, SchemaError, decode, parse_event
from stage_tracker.moves.consumer import HANDLED, EventHandler
from stage_tracker.moves.models.machine import Refused
from stage_tracker.moves.store import rebuild as store

log = logging.getLogger(__name__)
Record: TypeAlias = ConsumerRecord  # aiokafka is untyped


def _event_time(record: Record) -> float:
    for key, value in record.headers or ():
        if key == "ce_time":
            try:
                return datetime.fromisoformat(value.decode().replace("Z", "+00:00")).timestamp()
            except ValueError:
                break
    return float(record.timestamp) / 1000


async def _read_to_end(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, list[Record]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: dict[TopicPartition, list[Record]] = {tp: [] for tp in tps}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                records[tp] += [r for r in batch if r.offset < ends[tp]]
        return records
    finally:
        await consumer.stop()


async def rebuild(
    pool: asyncpg.Pool,
    bootstrap: str,
    topics: Iterable[str],
    handler: EventHandler,
    *,
    group_id: str | None,
) -> dict[str, int]:
    """Feed every event of `topics` once, merged by event time; returns counts by outcome."""
    topics = list(topics)
    per_partition = await _read_to_end(bootstrap, topics)
    counts = {"processed": 0, "duplicate": 0, "ignored": 0, "poison": 0}
    outbox_before = await store.outbox_high_water(pool)
    merged = heapq.merge(*per_partition.values(), key=_event_time)
    for record in merged:
        try:
            envelope = decode(record.key, record.value, list(record.headers or []))
            if envelope.type not in HANDLED:
                counts["ignored"] += 1
                continue
            event = parse_event(envelope.type, envelope.data)
        except (DecodeError, SchemaError):
            counts["poison"] += 1  # already in the dead-letter topic from the live run
            continue
        async with pool.acquire() as conn, conn.transaction():
            if not await store.claim(conn, envelope):
                counts["duplicate"] += 1
                continue
            try:
                async with conn.transaction():  # a savepoint: a refused event leaves no trace
                    await handler(conn, envelope, event)
            except (LookupError, Refused):
                counts["poison"] += 1  # unknown funnel or stage: dead-lettered by the live run
                continue
        counts["processed"] += 1
    await store.drop_outbox_after(pool, outbox_before)
    if group_id is not None:
        await _commit_ends(bootstrap, group_id, per_partition)
    return counts


async def _commit_ends(
    bootstrap: str, group_id: str, per_partition: dict[TopicPartition, list[Any]]
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offsets = {tp: rs[-1].offset + 1 for tp, rs in per_partition.items() if rs}
        if offsets:
            consumer.assign(list(offsets))
            await consumer.commit(offsets)
    finally:
        await consumer.stop()
