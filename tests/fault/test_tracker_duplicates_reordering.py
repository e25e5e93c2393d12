"""stage-tracker under duplicated and stale deliveries through the real broker: nothing changes.

Two trackers (real batch consumer and relay, each its own database and group) follow the same
people live, round by round. The clean one reads each event once. The faulty one reads its own
copies of the topics where every round brings, after the round's events: every earlier record
again, newest first (what a producer retry, a relay that died before deleting its rows, or a
group that lost its offsets delivers: the inbox knows them), and the round's and the previous
round's records once more under another CloudEvents source (copies the inbox cannot know; the
machine's own event ids must). Stale copies of a lead's older events thus arrive after its
newer ones. States, histories and signals come out exactly as in the clean run; nothing is
dead-lettered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from funnel_contracts import Envelope, KafkaRecord, encode
from funnel_devstack.stack import Stack
from stage_tracker.moves.consumer import TOPICS
from tests.e2e.waiting import eventually
from tests.integration.tracker_harness import (
    HISTORY,
    STATE,
    journeys,
    running_tracker,
    tracker_database,
    until_count,
)

pytestmark = pytest.mark.fault

COPY = "tracker-fault."  # the faulty tracker's own copies of the topics
SIGNALS = """SELECT lead_id, event_id, occurred_at, points, applied FROM lead_signals
             ORDER BY lead_id, event_id"""

Sent = tuple[str, KafkaRecord]  # (topic, record)


def _with_source(record: KafkaRecord, source: str) -> KafkaRecord:
    headers = [(k, source.encode() if k == "ce_source" else v) for k, v in record.headers]
    return KafkaRecord(record.key, record.value, headers)


async def _send(stack: Stack, records: list[Sent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for topic, r in records:
            await producer.send_and_wait(topic, key=r.key, value=r.value, headers=r.headers)
    finally:
        await producer.stop()


async def _create_copies(stack: Stack) -> list[str]:
    names = [COPY + t for t in TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=3, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()
    return names


async def _records_in(stack: Stack, topics: list[str]) -> int:
    probe = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        ends = await probe.end_offsets([TopicPartition(t, p) for t in topics for p in range(3)])
        return sum(ends.values())
    finally:
        await probe.stop()


async def _lag(stack: Stack, group: str, topics: list[str]) -> int:
    """Records of `topics` the group has not committed yet."""
    probe = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await probe.start()
    await admin.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(3)]
        ends = await probe.end_offsets(tps)
        committed = {
            tp: m.offset for tp, m in (await admin.list_consumer_group_offsets(group)).items()
        }
        return sum(max(end - committed.get(tp, 0), 0) for tp, end in ends.items())
    finally:
        await admin.close()
        await probe.stop()


async def _rows(pool: asyncpg.Pool, query: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await pool.fetch(query)]


async def test_duplicated_and_stale_deliveries_through_the_broker_change_nothing(
    module_infra: Stack,
) -> None:
    stack = module_infra
    copies = await _create_copies(stack)
    leads = [uuid4() for _ in range(18)]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    plans = [journeys(lead, i, t0 + timedelta(seconds=i)) for i, lead in enumerate(leads)]
    clean_dsn, faulty_dsn = await tracker_database(stack), await tracker_database(stack)
    sent: list[Sent] = []
    rounds: list[list[Sent]] = []
    async with (
        running_tracker(stack, clean_dsn, "tracker-clean") as clean,
        running_tracker(stack, faulty_dsn, "tracker-faulty", copies) as faulty,
    ):
        for r in range(max(len(p) for p in plans)):
            events = [e for plan in plans if r < len(plan) for e in plan[r]]
            now = [(e.topic, encode(Envelope.of(e, source="fault-test"))) for e in events]
            await _send(stack, now)
            stale = [*reversed(sent)]  # every earlier record again, newest first
            other_source = [
                (t, _with_source(rec, "fault-test-relay-2"))
                for t, rec in reversed([*(rounds[-1] if rounds else []), *now])
            ]
            await _send(stack, [(COPY + t, rec) for t, rec in [*now, *stale, *other_source]])
            sent += now
            rounds.append(now)
            # Live, people act seconds apart: the next round once this one is in, in both.
            await until_count(clean, "SELECT count(*) FROM inbox", len(sent))
            await until_count(faulty, "SELECT count(*) FROM inbox", 2 * len(sent))
        # Every stale copy read and committed too (they add no inbox row).
        await eventually(
            lambda: _lag(stack, "tracker-faulty", copies), lambda n: n == 0, timeout=60
        )
        await eventually(lambda: _lag(stack, "tracker-clean", list(TOPICS)), lambda n: n == 0)
        delivered = await _records_in(stack, copies)
        clean_state, faulty_state = await _rows(clean, STATE), await _rows(faulty, STATE)
        clean_history, faulty_history = await _rows(clean, HISTORY), await _rows(faulty, HISTORY)
        clean_signals, faulty_signals = await _rows(clean, SIGNALS), await _rows(faulty, SIGNALS)
        assert await faulty.fetchval("SELECT count(*) FROM inbox") == 2 * len(sent)
        for pool in (clean, faulty):
            assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0

    assert delivered > 3 * len(sent)  # the faulty tracker really read every copy
    assert {r[0] for r in clean_state} == set(leads)
    assert len(clean_history) > 3 * len(leads)
    assert faulty_state == clean_state
    assert faulty_history == clean_history
    assert faulty_signals == clean_signals
