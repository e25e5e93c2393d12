"""The inbox consumer, against the real PostgreSQL and the real Kafka.

Each test has its own schema, topic (with its `.dlq`) and consumer group. The handler writes
into a `handled` table in the same transaction as the inbox row, as a service's handler does,
so the table shows exactly which events took effect, how often and in which order.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from funnel_contracts import Envelope, EventData, StageChanged, encode
from funnel_contracts.topics import dead_letter_topic
from funnel_devstack.stack import Stack
from funnel_servicekit import inbox as kit_inbox
from funnel_servicekit.inbox import Delivery, InboxConsumer, rows_held
from funnel_servicekit.kafka import create_producer
from funnel_servicekit.runtime import Worker, supervise
from tests.integration.kit_support import (
    PARTITIONS,
    CrashingPool,
    Db,
    SessionLostProducer,
    committed_offsets,
    create_topics,
    end_offsets,
    eventually,
    isolated_db,
    read_all,
    record_count,
    stage_changed,
    stop_task,
    unique,
)

pytestmark = pytest.mark.integration

SOURCE = "it-inbox"
Wire = tuple[bytes, bytes, list[tuple[str, bytes]]]


@pytest.fixture
async def db(infra: Stack) -> AsyncIterator[Db]:
    async with isolated_db(infra.postgres.dsn) as db:
        await create_handled_table(db.pool)
        yield db


async def create_handled_table(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "CREATE TABLE handled (seq bigserial PRIMARY KEY, event_id text NOT NULL,"
        " source text NOT NULL, position int NOT NULL,"
        " tx bigint NOT NULL DEFAULT txid_current())"  # the top transaction, not a savepoint's
    )


@pytest.fixture
async def topic(infra: Stack) -> str:
    name = unique("it.inbox")
    await create_topics(infra.kafka_bootstrap, name)  # and its .dlq
    return name


@pytest.fixture
async def producer(infra: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = create_producer(infra.kafka_bootstrap, unique("it-inbox"))
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@dataclass
class Handler:
    """Writes each event to `handled`; `fail(envelope, attempt)` may raise instead of returning."""

    fail: Callable[[Envelope, int], None] = lambda _env, _attempt: None
    calls: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set up, the handler waits for it after writing
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(
        self, conn: asyncpg.Connection, envelope: Envelope, event: EventData
    ) -> None:
        self.calls.append(envelope.id)
        assert isinstance(event, StageChanged)
        await conn.execute(
            "INSERT INTO handled (event_id, source, position) VALUES ($1, $2, $3)",
            envelope.id,
            envelope.source,
            event.to_stage_position,
        )
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.fail(envelope, self.calls.count(envelope.id))


def make_consumer(
    infra: Stack,
    db: Db,
    producer: AIOKafkaProducer,
    topic: str,
    group: str,
    handler: Handler,
    max_attempts: int = 3,
    producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    **options: Any,
) -> InboxConsumer:
    return InboxConsumer(
        pool=db.pool,
        producer=producer,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group,
        topics=[topic],
        handler=handler,
        handled_types={StageChanged.event_type},
        max_attempts=max_attempts,
        producer_factory=producer_factory,
        **options,
    )


@contextlib.asynccontextmanager
async def running(consumer: InboxConsumer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(consumer.run())
    try:
        yield task
    finally:
        if task.done():
            task.result()  # a consumer that crashed fails the test with its own error
        else:
            await stop_task(consumer.stop, task)


def event(
    lead: uuid.UUID, position: int, *, source: str = SOURCE, event_id: str | None = None
) -> Envelope:
    return Envelope.of(stage_changed(lead, position), source=source, event_id=event_id)


def wire(envelope: Envelope) -> Wire:
    record = encode(envelope)
    return record.key, record.value, list(record.headers)


async def produce(bootstrap: str, topic: str, records: list[Wire]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def wait_all_committed(infra: Stack, topic: str, group: str, timeout: float = 20) -> None:
    """Until the group's committed offsets reach the end of every partition holding records."""
    ends = {p: o for p, o in (await end_offsets(infra.kafka_bootstrap, topic)).items() if o}
    await eventually(
        lambda: committed_offsets(infra.kafka_bootstrap, group),
        lambda got: all(got.get(p) == o for p, o in ends.items()),
        timeout=timeout,
        what=f"group {group} committed up to {ends}",
    )


async def handled(db: Db) -> list[tuple[str, str, int]]:
    rows = await db.pool.fetch("SELECT event_id, source, position FROM handled ORDER BY seq")
    return [(r["event_id"], r["source"], r["position"]) for r in rows]


async def test_the_same_event_delivered_twice_is_handled_once(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    first, second = event(lead, 0), event(lead, 1)
    same_id_other_source = event(lead, 2, source="another-service", event_id=first.id)
    await produce(
        infra.kafka_bootstrap,
        topic,
        [wire(first), wire(first), wire(second), wire(first), wire(same_id_other_source)],
    )
    group = unique("it-group")
    handler = Handler()
    async with running(make_consumer(infra, db, producer, topic, group, handler)):
        await wait_all_committed(infra, topic, group)
    assert handler.calls == [first.id, second.id, first.id]  # the last one: another source
    assert await handled(db) == [
        (first.id, SOURCE, 0),
        (second.id, SOURCE, 1),
        (first.id, "another-service", 2),
    ]
    assert await db.count("inbox") == 3
    assert await db.count("dead_letters") == 0
    assert await record_count(infra.kafka_bootstrap, dead_letter_topic(topic)) == 0
    # The hop is observed for what was committed, not for the duplicates dropped.
    hop = {"hop": "committed", "topic": topic}
    assert REGISTRY.get_sample_value("funnel_event_hop_seconds_count", hop) == 3


async def test_a_batch_handler_gets_the_fresh_events_and_each_commit_is_a_hop(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    events = [event(lead, i) for i in range(5)]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in [*events, events[0]]])
    seen: list[str] = []

    async def batch(conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        seen.extend(d.envelope.id for d in deliveries)

    group = unique("it-group")
    consumer = make_consumer(infra, db, producer, topic, group, Handler())
    consumer.batch_handler = batch
    async with running(consumer):
        await wait_all_committed(infra, topic, group)
    assert sorted(seen) == sorted(e.id for e in events)  # the duplicate never reached it
    hop = {"hop": "committed", "topic": topic}
    assert REGISTRY.get_sample_value("funnel_event_hop_seconds_count", hop) == len(events)
    assert (REGISTRY.get_sample_value("funnel_event_hop_seconds_sum", hop) or 0) > 0


async def test_poison_records_are_dead_lettered_and_the_partition_moves_on(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    key = str(lead).encode()
    good_before, good_after = event(lead, 0), event(lead, 1)
    ce_headers = wire(event(lead, 5))[2]
    schema_invalid = Envelope(
        type=StageChanged.event_type, source=SOURCE, subject=str(lead), data={"lead_id": str(lead)}
    )
    poison: list[Wire] = [
        (key, b'{"lead_id": "x"}', [("origin", b"no-ce-headers")]),  # not a CloudEvent
        (key, b'{"lead_id": ', ce_headers),  # CloudEvent headers, value not JSON
        wire(schema_invalid),  # decodes, but not a valid StageChanged
    ]
    await produce(infra.kafka_bootstrap, topic, [wire(good_before), *poison, wire(good_after)])
    group = unique("it-group")
    handler = Handler()
    async with running(make_consumer(infra, db, producer, topic, group, handler)):
        await wait_all_committed(infra, topic, group)
        await eventually(
            lambda: record_count(infra.kafka_bootstrap, dead_letter_topic(topic)),
            lambda n: n >= 3,
            what="three dead letters",
        )
    assert [h[0] for h in await handled(db)] == [good_before.id, good_after.id]
    assert handler.calls == [good_before.id, good_after.id]

    dead = await read_all(infra.kafka_bootstrap, dead_letter_topic(topic))
    assert len(dead) == 3
    source_partition = next(
        p for p, o in (await end_offsets(infra.kafka_bootstrap, topic)).items() if o
    )
    for record, (p_key, p_value, p_headers), offset in zip(dead, poison, (1, 2, 3), strict=True):
        headers = dict(record.headers)
        assert record.key == p_key
        assert record.value == p_value  # the original bytes, for inspection and replay
        assert list(record.headers)[: len(p_headers)] == p_headers  # original headers kept
        assert headers["dlq_topic"] == topic.encode()
        assert headers["dlq_partition"] == str(source_partition).encode()
        assert headers["dlq_offset"] == str(offset).encode()
        assert headers["dlq_consumer_group"] == group.encode()
    errors = [dict(r.headers)["dlq_error"].decode() for r in dead]
    assert errors[0].startswith("DecodeError: no ce_* headers")
    assert errors[1].startswith("DecodeError: ")
    assert errors[2].startswith("SchemaError: ")
    assert "to_stage" in errors[2]

    rows = await db.pool.fetch(
        'SELECT topic, partition, "offset", error FROM dead_letters ORDER BY "offset"'
    )
    assert [(r["topic"], r["partition"], r["offset"]) for r in rows] == [
        (topic, source_partition, offset) for offset in (1, 2, 3)
    ]
    assert [r["error"] for r in rows] == errors
    assert await db.count("inbox") == 2  # poison never reaches the inbox


async def test_a_type_no_contract_knows_is_poison_and_a_known_unhandled_one_is_skipped(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    first, last = event(lead, 0), event(lead, 1)
    data = {"lead_id": str(lead)}
    not_ours = Envelope(type="funnel.touch.sent.v1", source=SOURCE, subject=str(lead), data=data)
    unknown = Envelope(
        type="funnel.stage.teleported.v1", source=SOURCE, subject=str(lead), data=data
    )
    await produce(
        infra.kafka_bootstrap, topic, [wire(first), wire(not_ours), wire(unknown), wire(last)]
    )
    group = unique("it-group")
    handler = Handler()
    async with running(make_consumer(infra, db, producer, topic, group, handler)):
        await wait_all_committed(infra, topic, group)
        await eventually(
            lambda: record_count(infra.kafka_bootstrap, dead_letter_topic(topic)),
            lambda n: n >= 1,
            what="one dead letter",
        )
    assert handler.calls == [first.id, last.id]
    [dead] = await read_all(infra.kafka_bootstrap, dead_letter_topic(topic))
    headers = dict(dead.headers)
    assert headers["dlq_error"] == b"SchemaError: unknown event type 'funnel.stage.teleported.v1'"
    assert headers["dlq_offset"] == b"2"
    assert await db.count("inbox") == 2


async def test_transient_errors_are_retried_in_place_and_never_dead_lettered(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    flaky, after = event(lead, 0), event(lead, 1)

    def fail(envelope: Envelope, attempt: int) -> None:
        if envelope.id == flaky.id and attempt == 1:
            raise ConnectionError("connection reset by peer")
        if envelope.id == flaky.id and attempt == 2:
            raise asyncpg.PostgresConnectionError("the database went away")

    await produce(infra.kafka_bootstrap, topic, [wire(flaky), wire(after)])
    group = unique("it-group")
    handler = Handler(fail=fail)
    # max_attempts=2: were transient failures counted as attempts, `flaky` would be dead-lettered.
    consumer = make_consumer(infra, db, producer, topic, group, handler, max_attempts=2)
    async with running(consumer):
        await wait_all_committed(infra, topic, group)
    assert handler.calls == [flaky.id, flaky.id, flaky.id, after.id]
    assert await handled(db) == [(flaky.id, SOURCE, 0), (after.id, SOURCE, 1)]
    assert await db.count("inbox") == 2
    assert await db.count("dead_letters") == 0
    assert await record_count(infra.kafka_bootstrap, dead_letter_topic(topic)) == 0


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_max_attempts(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    broken, after = event(lead, 0), event(lead, 1)

    def fail(envelope: Envelope, attempt: int) -> None:
        if envelope.id == broken.id:
            raise ValueError(f"cannot apply, attempt {attempt}")

    await produce(infra.kafka_bootstrap, topic, [wire(broken), wire(after)])
    group = unique("it-group")
    handler = Handler(fail=fail)
    async with running(make_consumer(infra, db, producer, topic, group, handler, max_attempts=4)):
        await wait_all_committed(infra, topic, group)
    assert Counter(handler.calls) == {broken.id: 4, after.id: 1}
    assert handler.calls[-1] == after.id  # the partition moved on after the dead letter
    # Every failed attempt rolled back its write and its inbox row.
    assert await handled(db) == [(after.id, SOURCE, 1)]
    inbox = await db.pool.fetch("SELECT event_id FROM inbox")
    assert [r["event_id"] for r in inbox] == [after.id]
    dead = await read_all(infra.kafka_bootstrap, dead_letter_topic(topic))
    assert len(dead) == 1
    assert dict(dead[0].headers)["ce_id"] == broken.id.encode()
    assert dict(dead[0].headers)["dlq_error"] == b"ValueError: cannot apply, attempt 4"
    assert await db.count("dead_letters") == 1


async def test_a_failed_attempt_rolls_back_its_writes_together_with_the_inbox_row(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    once = event(lead, 0)

    def fail(envelope: Envelope, attempt: int) -> None:
        if attempt == 1:
            raise ValueError("fails the first time only")

    await produce(infra.kafka_bootstrap, topic, [wire(once)])
    group = unique("it-group")
    handler = Handler(fail=fail)
    async with running(make_consumer(infra, db, producer, topic, group, handler)):
        await wait_all_committed(infra, topic, group)
    # Called again (the inbox row of attempt 1 was rolled back, so it was not a "duplicate"),
    # and one row in `handled` (the write of attempt 1 was rolled back too).
    assert handler.calls == [once.id, once.id]
    assert await handled(db) == [(once.id, SOURCE, 0)]
    assert await db.count("inbox") == 1
    assert await record_count(infra.kafka_bootstrap, dead_letter_topic(topic)) == 0


async def test_offsets_are_committed_after_the_database_commit_and_never_redelivered(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    lead = uuid.uuid4()
    first_batch = [event(lead, p) for p in range(3)]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in first_batch])
    group = unique("it-group")
    handler = Handler(gate=asyncio.Event())
    consumer = make_consumer(infra, db, producer, topic, group, handler)
    async with running(consumer) as task:
        await asyncio.wait_for(handler.entered.wait(), 20)
        # The handler is inside its transaction: nothing is committed, in the database or Kafka.
        assert handler.calls == [first_batch[0].id]
        assert await committed_offsets(infra.kafka_bootstrap, group) == {}
        assert await db.count("inbox") == 0
        assert await db.count("handled") == 0
        consumer.stop()  # a drain: finish the batch in hand, commit, close
        assert handler.gate is not None
        handler.gate.set()
        await asyncio.wait_for(task, 15)
    done = len(handler.calls)
    assert handler.calls == [e.id for e in first_batch[:done]]
    assert await db.count("handled") == done
    partition = next(p for p, o in (await end_offsets(infra.kafka_bootstrap, topic)).items() if o)
    assert await committed_offsets(infra.kafka_bootstrap, group) == {partition: done}

    # A new member of the same group, on an EMPTY inbox (another schema): anything Kafka
    # redelivered would reach its handler, so its calls show exactly what was redelivered.
    async with isolated_db(infra.postgres.dsn) as other_db:
        await create_handled_table(other_db.pool)
        late = event(lead, 3)
        await produce(infra.kafka_bootstrap, topic, [wire(late)])
        second = Handler()
        async with running(make_consumer(infra, other_db, producer, topic, group, second)):
            await wait_all_committed(infra, topic, group)
        assert second.calls == [e.id for e in first_batch[done:]] + [late.id]
        assert await committed_offsets(infra.kafka_bootstrap, group) == {partition: 4}


async def test_poison_is_dead_lettered_once_with_a_new_producer_after_a_lost_session(
    infra: Stack, db: Db, topic: str
) -> None:
    """The shared producer's idempotent session is gone for good (its sends keep failing with
    OutOfOrderSequenceNumber): the consumer dead-letters with a producer of its own instead of
    retrying the dead one forever, and the partition moves on."""
    lead = uuid.uuid4()
    good = event(lead, 0)
    poison: Wire = (str(lead).encode(), b"not a cloudevent", [("ce_id", b"x")])
    await produce(infra.kafka_bootstrap, topic, [poison, wire(good)])
    broken = SessionLostProducer(bootstrap_servers=infra.kafka_bootstrap)
    await broken.start()
    made: list[AIOKafkaProducer] = []

    def factory() -> AIOKafkaProducer:
        made.append(create_producer(infra.kafka_bootstrap, unique("it-inbox-renewed")))
        return made[-1]

    group = unique("it-group")
    handler = Handler()
    consumer = make_consumer(infra, db, broken, topic, group, handler, producer_factory=factory)
    try:
        async with running(consumer):
            await wait_all_committed(infra, topic, group)
            assert consumer.producer is made[0]
        # Ended, it stopped its own producer and went back to the shared one: a run after a
        # crash must not publish with a stopped producer.
        assert consumer.producer is broken
    finally:
        await broken.stop()
    assert broken.sends >= 1  # the dead letter really met the lost session first
    assert len(made) == 1
    dead = await read_all(infra.kafka_bootstrap, dead_letter_topic(topic))
    assert [(r.key, r.value) for r in dead] == [(poison[0], poison[1])]
    assert await db.count("dead_letters") == 1
    assert handler.calls == [good.id]


async def test_a_consumer_loop_that_crashed_is_restarted_and_resumes_from_its_commit(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    """The runtime's supervisor runs a crashed loop again on the same object: the consumer
    must come back with a new Kafka client (a stopped one cannot start again) and go on from
    the group's committed offsets, each event taking effect once."""
    lead = uuid.uuid4()
    first, second, third = event(lead, 0), event(lead, 1), event(lead, 2)
    pool = CrashingPool(db.pool)
    group = unique("it-group")
    handler = Handler()
    consumer = make_consumer(infra, db, producer, topic, group, handler)
    consumer.pool = cast(asyncpg.Pool, pool)
    stopping = asyncio.Event()
    restarts_before = (
        REGISTRY.get_sample_value("funnel_worker_restarts_total", {"worker": group}) or 0.0
    )

    async def quick(stopping: asyncio.Event, seconds: float) -> None:
        await asyncio.sleep(0.05)

    supervised = asyncio.create_task(
        supervise(Worker(group, consumer.run, consumer.stop), stopping, pause=quick)
    )
    try:
        await produce(infra.kafka_bootstrap, topic, [wire(first)])
        await wait_all_committed(infra, topic, group)
        pool.crash_next()
        await produce(infra.kafka_bootstrap, topic, [wire(second), wire(third)])
        await wait_all_committed(infra, topic, group, timeout=60)
    finally:
        stopping.set()
        await stop_task(consumer.stop, supervised)
    assert pool.crashes == 1
    assert REGISTRY.get_sample_value("funnel_worker_restarts_total", {"worker": group}) == (
        restarts_before + 1
    )
    assert [h[0] for h in await handled(db)] == [first.id, second.id, third.id]
    assert await db.count("inbox") == 3
    assert await db.count("dead_letters") == 0


async def test_what_one_poll_fetched_from_every_partition_commits_in_one_transaction(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    """The records of many partitions, there before the consumer starts, arrive in one or
    two polls; each poll is one transaction (one fsync), not one per partition, so the
    handler's rows carry fewer transaction ids than there are partitions."""
    events = [event(uuid.uuid4(), 0) for _ in range(60)]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in events])
    ends = {p: o for p, o in (await end_offsets(infra.kafka_bootstrap, topic)).items() if o}
    assert len(ends) == PARTITIONS  # the leads' keys spread over every partition
    group = unique("it-group")
    async with running(make_consumer(infra, db, producer, topic, group, Handler())):
        await wait_all_committed(infra, topic, group)
    assert await db.count("handled") == len(events)
    assert await db.pool.fetchval("SELECT count(DISTINCT tx) FROM handled") < PARTITIONS


@dataclass
class PollHandler:
    """A batch handler that writes each event to `handled` and notes each call's partitions
    (by lead key); raises after writing when a call holds the event `bad`."""

    bad: str | None = None
    calls: list[list[tuple[str, str]]] = field(default_factory=list)  # (lead key, event id)

    async def __call__(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        self.calls.append([(d.envelope.subject, d.envelope.id) for d in deliveries])
        for d in deliveries:
            assert isinstance(d.event, StageChanged)
            await conn.execute(
                "INSERT INTO handled (event_id, source, position) VALUES ($1, $2, $3)",
                d.envelope.id,
                d.envelope.source,
                d.event.to_stage_position,
            )
        if self.bad is not None and any(d.envelope.id == self.bad for d in deliveries):
            raise ValueError("this batch cannot be handled at once")


@pytest.mark.parametrize("in_flight", [1, 2, 3], ids=["one-poll-at-a-time", "two", "three"])
async def test_a_poll_at_once_handler_gets_every_partition_in_one_call_each_in_order(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str, in_flight: int
) -> None:
    """`batch_per_poll`: what one poll fetched from every partition reaches the batch handler
    in one call (fewer calls than partitions), each lead's events in their order, each once."""
    leads = [uuid.uuid4() for _ in range(30)]
    events = [event(lead, p) for p in range(2) for lead in leads]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in events])
    ends = {p: o for p, o in (await end_offsets(infra.kafka_bootstrap, topic)).items() if o}
    assert len(ends) == PARTITIONS
    group = unique("it-group")
    handler = PollHandler()
    consumer = make_consumer(infra, db, producer, topic, group, Handler())
    consumer.batch_handler = handler
    consumer.batch_per_poll = True
    consumer.polls_in_flight = in_flight
    async with running(consumer):
        await wait_all_committed(infra, topic, group)
    assert len(handler.calls) < PARTITIONS
    assert max(len({lead for lead, _ in call}) for call in handler.calls) > PARTITIONS
    rows = await handled(db)
    assert sorted(r[0] for r in rows) == sorted(e.id for e in events)  # each once
    order = [event_id for call in handler.calls for _, event_id in call]
    for lead in leads:  # position 0 before position 1
        mine = [e.id for e in events if e.subject == str(lead)]
        assert [i for i in order if i in mine] == mine
    assert await db.count("inbox") == len(events)


@pytest.mark.parametrize("in_flight", [1, 2, 3], ids=["one-poll-at-a-time", "two", "three"])
async def test_a_poll_whose_batch_handler_fails_is_rolled_back_and_done_the_careful_way(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str, in_flight: int
) -> None:
    """A batch handler that fails on a poll done at once: the poll's transaction (inbox rows
    and the handler's writes) is rolled back, then each partition's batch is tried in its
    savepoint and the failing one goes record by record: every event takes effect once, none
    is dead-lettered."""
    leads = [uuid.uuid4() for _ in range(12)]
    events = [event(lead, 0) for lead in leads]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in events])
    group = unique("it-group")
    poll_handler = PollHandler(bad=events[0].id)
    record_handler = Handler()
    consumer = make_consumer(infra, db, producer, topic, group, record_handler)
    consumer.batch_handler = poll_handler
    consumer.batch_per_poll = True
    consumer.polls_in_flight = in_flight
    async with running(consumer):
        await wait_all_committed(infra, topic, group)
    rows = await handled(db)
    assert sorted(r[0] for r in rows) == sorted(e.id for e in events)  # each once
    assert events[0].id in record_handler.calls  # its partition went record by record
    assert any(len(call) == len(events) for call in poll_handler.calls)  # tried at once first
    assert await db.count("inbox") == len(events)
    assert await db.count("dead_letters") == 0


# ---------------------------------------------------------------- two polls in flight (0094)


async def create_positions_table(pool: asyncpg.Pool) -> None:
    """Each event's position and the lead's last position its handler read before writing it:
    what a poll that read a lead before the poll ahead committed it would get wrong."""
    await pool.execute(
        "CREATE TABLE positions (lead text NOT NULL, position int NOT NULL,"
        " last_read int NOT NULL, event_id text NOT NULL)"
    )


async def lock(conn: asyncpg.Connection, keys: Collection[str]) -> None:
    """Transaction advisory locks on `keys`, in one order (as the tracker locks its leads)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(h) FROM"
        " (SELECT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS ordered",
        list(keys),
    )


@dataclass
class LeadHandler:
    """A batch handler as a pipelined service's: it locks its leads, says so (`rows_held`),
    then writes each event's position with the lead's last position it read. Its first call
    may wait for `hold`, pause, or fail (transiently) after saying so; `late` makes it break
    the promise: the first call locks that key after `rows_held`, the others before."""

    hold: asyncio.Event | None = None
    pause: float = 0.0
    fail_first: bool = False
    late: str | None = None
    calls: list[list[str]] = field(default_factory=list)
    returned: int = 0
    active: int = 0
    most_active: int = 0  # handler calls running at the same time, at most

    async def __call__(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        first = not self.calls
        self.calls.append([d.envelope.id for d in deliveries])
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.late is not None and not first:
                await lock(conn, [self.late])
            await lock(conn, {d.envelope.subject for d in deliveries})
            rows_held()
            if first:
                if self.hold is not None:
                    await self.hold.wait()
                await asyncio.sleep(self.pause)
                if self.late is not None:
                    await lock(conn, [self.late])  # waits for the poll after this one
                if self.fail_first:
                    raise ConnectionResetError("the database went away mid-poll")
            for d in deliveries:
                assert isinstance(d.event, StageChanged)
                last = await conn.fetchval(
                    "SELECT coalesce(max(position), -1) FROM positions WHERE lead = $1",
                    d.envelope.subject,
                )
                await conn.execute(
                    "INSERT INTO positions VALUES ($1, $2, $3, $4)",
                    d.envelope.subject,
                    d.event.to_stage_position,
                    last,
                    d.envelope.id,
                )
        finally:
            self.active -= 1
        self.returned += 1


def pipelined_consumer(
    infra: Stack,
    db: Db,
    producer: AIOKafkaProducer,
    topic: str,
    group: str,
    handler: LeadHandler,
    in_flight: int = 2,
) -> InboxConsumer:
    return make_consumer(
        infra,
        db,
        producer,
        topic,
        group,
        Handler(),
        batch_handler=handler,
        max_poll_records=4,  # many small polls: several in a row hold the same leads
        batch_per_poll=True,
        polls_in_flight=in_flight,
    )


async def positions(db: Db) -> list[tuple[str, int, int, str]]:
    rows = await db.pool.fetch("SELECT * FROM positions ORDER BY lead, position")
    return [(r["lead"], r["position"], r["last_read"], r["event_id"]) for r in rows]


def assert_each_once_in_order(
    rows: list[tuple[str, int, int, str]], events: list[Envelope]
) -> None:
    """Every event took effect once, and each read its lead's previous position: no poll read
    a lead before the poll ahead of it had committed that lead's earlier events."""
    assert sorted(r[3] for r in rows) == sorted(e.id for e in events)
    assert all(last == position - 1 for _, position, last, _ in rows), rows


async def test_a_pipelined_poll_begins_before_the_one_ahead_commits_and_commits_after_it(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    """The next poll's handler runs while the poll ahead is still in its transaction; its
    writes stay uncommitted until the one ahead has committed; a third poll waits for the
    first to finish (two in flight at most)."""
    await create_positions_table(db.pool)
    events = [event(uuid.uuid4(), 0) for _ in range(12)]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in events])
    group = unique("it-group")
    hold = asyncio.Event()
    handler = LeadHandler(hold=hold)
    async with running(pipelined_consumer(infra, db, producer, topic, group, handler)):

        async def progress() -> tuple[int, int]:
            return len(handler.calls), handler.returned

        await eventually(progress, lambda got: got == (2, 1), what="the second poll handled")
        await asyncio.sleep(0.3)
        assert (len(handler.calls), handler.returned) == (2, 1)  # no third poll meanwhile
        assert await db.count("positions") == 0  # the second waits for the first to commit
        assert await db.count("inbox") == 0
        hold.set()
        await wait_all_committed(infra, topic, group)
    assert handler.most_active == 2
    assert_each_once_in_order(await positions(db), events)
    assert await db.count("inbox") == len(events)


async def test_pipelined_polls_holding_the_same_leads_take_effect_in_their_order(
    infra: Stack, db: Db, producer: AIOKafkaProducer, topic: str
) -> None:
    """Consecutive polls hold events of the same leads: the later poll's handler runs while
    the earlier one is in flight, waits for its locks, and reads what it committed."""
    await create_positions_table(db.pool)
    leads = [uuid.uuid4() for _ in range(3)]
    events = [event(lead, p) for p in range(6) for lead in leads]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in events])
    group = unique("it-group")
    handler = LeadHandler(pause=0.2)
    async with running(pipelined_consumer(infra, db, producer, topic, group, handler)):
        await wait_all_committed(infra, topic, group)
    assert handler.most_active == 2  # the second poll began while the first was in flight
    assert_each_once_in_order(await positions(db), events)
    assert await db.count("inbox") == len(events)


@pytest.mark.parametrize("in_flight", [2, 3], ids=["two", "three"])
async def test_a_pipelined_poll_is_done_again_after_the_one_ahead_rolled_back(
    infra: Stack,
    db: Db,
    producer: AIOKafkaProducer,
    topic: str,
    in_flight: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The poll ahead fails (transiently) after the next ones began: they are rolled back and
    done again once the one ahead has been retried and committed, so no lead's events take
    effect out of order and none twice. Each rolled-back poll tells the one after it at once,
    so none waits for a poll that waits for it (the 5 s limit never comes into play)."""
    await create_positions_table(db.pool)
    leads = [uuid.uuid4() for _ in range(3)]
    events = [event(lead, p) for p in range(6) for lead in leads]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in events])
    group = unique("it-group")
    handler = LeadHandler(pause=0.3, fail_first=True)
    consumer = pipelined_consumer(infra, db, producer, topic, group, handler, in_flight)
    async with running(consumer):
        await wait_all_committed(infra, topic, group)
    assert handler.most_active >= 2
    second = handler.calls[1]
    assert sum(call == second for call in handler.calls) == 2  # rolled back, then done again
    assert "the poll ahead kept this one waiting" not in caplog.text
    assert_each_once_in_order(await positions(db), events)
    assert await db.count("inbox") == len(events)
    assert await db.count("dead_letters") == 0


async def test_a_handler_that_breaks_the_rows_held_promise_slows_the_pipeline_never_wedges_it(
    infra: Stack,
    db: Db,
    producer: AIOKafkaProducer,
    topic: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The poll ahead waits for a lock the next poll took after `rows_held` (a deadlock
    PostgreSQL cannot see: the next poll waits in Python for the one ahead to commit). The
    next poll gives up waiting, is rolled back and done again after it: every event once."""
    monkeypatch.setattr(kit_inbox, "AHEAD_WAIT_SECONDS", 0.5)
    await create_positions_table(db.pool)
    events = [event(uuid.uuid4(), 0) for _ in range(12)]
    await produce(infra.kafka_bootstrap, topic, [wire(e) for e in events])
    group = unique("it-group")
    handler = LeadHandler(pause=0.2, late="shared")
    async with running(pipelined_consumer(infra, db, producer, topic, group, handler)):
        await wait_all_committed(infra, topic, group)
    assert "the poll ahead kept this one waiting" in caplog.text
    second = handler.calls[1]
    assert sum(call == second for call in handler.calls) == 2
    assert_each_once_in_order(await positions(db), events)
    assert await db.count("inbox") == len(events)
