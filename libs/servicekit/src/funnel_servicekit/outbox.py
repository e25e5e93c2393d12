"""The transactional outbox: write events with the state change, publish them afterwards.

`enqueue` runs inside the caller's transaction. `OutboxRelay` publishes rows in id order with
the idempotent producer, in batches, woken by NOTIFY with a slow poll as the fallback, and
deletes them once the broker has acknowledged them. One relay at a time holds the schema's
advisory lock (a session lock: no transaction stays open while the broker is waited on), so
per-lead order holds even with several replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry import trace

from funnel_contracts import Envelope, EventData, KafkaRecord, encode
from funnel_contracts.envelope import TRACE_HEADERS, json_text
from funnel_servicekit import metrics
from funnel_servicekit.db import DATABASE_UNREACHABLE, connect
from funnel_servicekit.event_ids import new_event_id
from funnel_servicekit.kafka import FATAL_PRODUCER_ERRORS, ProducerFactory, RenewableProducer
from funnel_servicekit.loops import ListenOn, PollLoop, RetryLater
from funnel_servicekit.telemetry import (
    current_trace_headers,
    spans_recorded,
    unrecorded_child_headers,
)

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


# The database cannot be reached, or dropped the session.
_NO_SESSION: tuple[type[Exception], ...] = (*DATABASE_UNREACHABLE, OSError)


def _channel(schema: str) -> str:
    return f"{schema}_outbox"


async def enqueue(
    conn: asyncpg.Connection,
    schema: str,
    event: EventData,
    *,
    source: str,
    event_id: str | None = None,
    topic: str | None = None,
) -> Envelope:
    """Add an event to the outbox inside the caller's transaction; carries the trace.

    The record goes to the event's own topic unless `topic` names another one.
    """
    envelope = _traced_envelope(event, source, event_id, topic)
    record = encode(envelope)
    # One round trip: the row and the relay's wake-up (delivered at commit, like NOTIFY).
    await conn.execute(
        """WITH row AS (
               INSERT INTO outbox (topic, key, value, headers, event_type)
               VALUES ($1, $2, $3, $4, $5) RETURNING 1)
           SELECT pg_notify($6, '') FROM row""",
        topic or event.topic,
        record.key,
        record.value,
        [[k, v.decode()] for k, v in record.headers],
        envelope.type,
        _channel(schema),
    )
    return envelope


@dataclass(frozen=True)
class OutboxRecord:
    """An event encoded for the outbox (its trace taken when it was made), not yet written."""

    topic: str
    envelope: Envelope
    record: KafkaRecord


def outbox_record(
    event: EventData,
    *,
    source: str,
    event_id: str | None = None,
    topic: str | None = None,
    trace: Mapping[str, str] | None = None,
) -> OutboxRecord:
    """`enqueue` without the write: encode now, in the current span; `enqueue_many` writes.

    `trace`: the trace headers to carry as they are, made by the caller (see
    `telemetry.unrecorded_child_headers`); then no producer span is started.
    """
    return outbox_record_json(
        event.event_type,
        topic or event.topic,
        str(event.lead_id),
        event.model_dump(mode="json"),
        source=source,
        event_id=event_id,
        trace=trace,
    )


def outbox_record_json(
    event_type: str,
    topic: str,
    subject: str,
    data: dict[str, Any],
    *,
    source: str,
    event_id: str | None = None,
    trace: Mapping[str, str] | None = None,
    value: bytes | None = None,
) -> OutboxRecord:
    """`outbox_record` for an event already in its JSON form: `data` exactly as the event
    model's `model_dump(mode="json")` (a hot path that builds it directly must hold its bytes
    equal to the model's in a test), `subject` its lead id; `value`, when given, `data`
    already encoded (`funnel_contracts.json_text(data)`, byte for byte, held so in a test)."""
    event_id = event_id or str(uuid4())
    headers = _producer_trace(event_type, topic, event_id) if trace is None else dict(trace)
    envelope = Envelope(
        type=event_type, source=source, subject=subject, data=data, id=event_id, trace=headers
    )
    return OutboxRecord(topic, envelope, encode(envelope, value=value))


def _producer_trace(event_type: str, topic: str, event_id: str) -> dict[str, str]:
    """The trace context of a producer span of the event's own, started and ended here.

    A producer span per event: the trace shows where each event was written, and the span of
    whoever consumes it becomes its child (through the headers stored with the row). When
    the process records no span, none is made: the same headers, written directly.
    """
    if not spans_recorded():
        return unrecorded_child_headers(current_trace_headers())
    with _tracer.start_as_current_span(
        f"outbox {event_type}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.message.id": event_id,
        },
    ):
        return current_trace_headers()


def _traced_envelope(
    event: EventData, source: str, event_id: str | None, topic: str | None
) -> Envelope:
    """The event's envelope carrying a producer span of its own as its trace context."""
    event_id = event_id or str(uuid4())
    headers = _producer_trace(event.event_type, topic or event.topic, event_id)
    return Envelope.of(event, source=source, event_id=event_id, trace=headers)


async def enqueue_many(
    conn: asyncpg.Connection, schema: str, records: Sequence[OutboxRecord]
) -> None:
    """Write encoded events to the outbox in the caller's transaction, in order, and wake the
    relay: one statement for any number of rows."""
    rows = OutboxRows()
    for record in records:
        rows.add(record)
    await enqueue_rows(conn, schema, rows)


class OutboxRelay(PollLoop):
    """Publishes a schema's outbox to Kafka until stopped.

    While it runs, the relay keeps a connection of its own holding the schema's advisory
    lock (a session lock: the one publishing replica, and no transaction open while the
    broker is waited on). A wake-up is then one statement: the next rows, those published
    but not yet deleted left out; the published rows are deleted together, at most every
    `delete_interval_seconds` (and before the lock is let go). A relay that dies in between
    leaves rows that the next lock holder publishes again: the consumers' inboxes drop them
    (docs/decisions/0070).
    """

    # Any failure to publish leaves the rows in the outbox: log, pause, try again.
    transient_errors = (Exception,)
    # The backlog gauge counts rows up to this many at a delete, then gauges by id span.
    backlog_count_limit = 1000

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        dsn: str,
        schema: str,
        batch_size: int = 200,
        poll_seconds: float = 2.0,
        listen_retry_seconds: float = 5.0,
        producer_factory: ProducerFactory | None = None,
        listening_poll_seconds: float | None = None,
        delete_interval_seconds: float = 1.0,
        linger_seconds: float = 0.0,
        read_interval_seconds: float = 0.0,
    ) -> None:
        super().__init__(
            "outbox-relay",
            poll_seconds=poll_seconds,
            listening_poll_seconds=listening_poll_seconds,
            batch_size=batch_size,
            listen=ListenOn(dsn, schema, _channel(schema), listen_retry_seconds),
            max_error_pause_seconds=5.0,
            # After a NOTIFY: the commits of this while share one read and one produce batch.
            wake_linger_seconds=linger_seconds,
            # Woken soon after a read, the next waits until this long after it: a busy
            # moment's commits go out in fewer, larger reads and produce batches.
            wake_interval_seconds=read_interval_seconds,
        )
        self.pool = pool
        # Replaced by a fresh one when the idempotent session is lost for good (see step()).
        self._producer = RenewableProducer(producer, producer_factory)
        self.dsn = dsn
        self.schema = schema
        self.delete_interval_seconds = delete_interval_seconds
        self._lock_key = f"outbox:{schema}"
        # While running: the connection holding the lock (None: not held), the ids published
        # and not yet deleted, and when they are due to go.
        self._running = False
        self._held: asyncpg.Connection | None = None
        self._locked = False
        self._published: list[int] = []
        self._delete_due = 0.0
        self._connect_again_at = 0.0
        self.listen_retry_seconds = listen_retry_seconds

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer in use (a new one after a lost session)."""
        return self._producer.current

    @contextlib.asynccontextmanager
    async def resources(self) -> AsyncIterator[None]:
        self._running = True
        try:
            yield
        finally:
            self._running = False
            try:
                await self._let_go()
            finally:
                await self._producer.close()

    async def step(self) -> int:
        try:
            return await self.publish_batch()
        except FATAL_PRODUCER_ERRORS as exc:
            # aiokafka's sender task dies with these (e.g. sequence numbers out of step
            # after the broker was away while batches were in flight) and never sends
            # again; only a new producer, with a new producer id, can. The rows are
            # still in the outbox, so nothing is lost; consumers' inboxes drop any
            # record the old producer got through before it failed.
            log.exception("producer session lost; publishing with a new producer")
            await self._producer.renew()
            raise RetryLater from exc

    async def idle_seconds(self) -> float:
        """The poll, or sooner when published rows are due to be deleted."""
        poll = self.poll_interval
        if self._published:
            return min(poll, max(self._delete_due - time.monotonic(), 0.0))
        return poll

    async def publish_batch(self) -> int:
        """Publish one batch in id order; returns how many rows went out.

        No transaction is open while the broker is waited on: the relay's exclusivity is a
        session advisory lock. Outside `run()` (tests, tools) a batch takes the lock on a
        pooled connection, deletes what it published and gives the lock back.
        """
        if self._running and time.monotonic() >= self._connect_again_at:
            try:
                conn = await self._own_connection()
            except _NO_SESSION:
                # Its own session cannot be had now: publish from the pool meanwhile.
                log.warning("outbox relay: no session of its own; publishing from the pool")
                self._connect_again_at = time.monotonic() + self.listen_retry_seconds
            else:
                return await self._publish_held(conn)
        if self._published:
            return 0  # published rows wait for the held session: never sent twice by us
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self._lock_key):
                return 0  # another replica's relay is publishing
            try:
                published = await self._publish(conn, [])
                if published:
                    await self._delete(conn, published)
                return len(published)
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self._lock_key)
                except BaseException:
                    conn.terminate()  # the lock goes with the session, not back to the pool
                    raise

    async def _own_connection(self) -> asyncpg.Connection:
        if self._held is not None and self._held.is_closed():
            self._drop_held()
        if self._held is None:
            self._held = await asyncio.wait_for(connect(self.dsn, self.schema), 10)
            self._locked = False
        return self._held

    async def _publish_held(self, conn: asyncpg.Connection) -> int:
        """A batch on the relay's own connection, under the lock (taken first if need be)."""
        try:
            if not self._locked:
                self._locked = bool(
                    await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self._lock_key)
                )
                if not self._locked:
                    return 0  # another replica's relay is publishing
            published = await self._publish(conn, self._published)
            if published and not self._published:
                self._delete_due = time.monotonic() + self.delete_interval_seconds
            self._published += published
            if self._published and (
                time.monotonic() >= self._delete_due or len(self._published) >= self.batch_size
            ):
                await self._delete(conn, self._published)
                self._published = []
            return len(published)
        except (asyncpg.PostgresError, *_NO_SESSION):
            # The session (and its lock) may be gone: start again from a new one. Rows sent
            # and not deleted go out again with the next holder; inboxes drop them.
            self._drop_held()
            raise

    def _drop_held(self) -> None:
        conn, self._held, self._locked = self._held, None, False
        self._published = []
        if conn is not None:
            conn.terminate()  # the lock goes with the session

    async def _let_go(self) -> None:
        """At the end of a run: delete what was published, then close (and unlock)."""
        conn = self._held
        if conn is None:
            return
        try:
            if self._published and not conn.is_closed():
                await self._delete(conn, self._published)
        except Exception:
            log.warning("published rows not deleted; the next relay publishes them again")
        finally:
            self._published = []
            self._held, self._locked = None, False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
            if not conn.is_closed():
                conn.terminate()

    async def _publish(self, conn: asyncpg.Connection, skip: list[int]) -> list[int]:
        """Send the next rows (those in `skip` left out), wait for the broker's acks; returns
        their ids."""
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers, extract(epoch FROM created_at) AS at"
            " FROM outbox WHERE id <> ALL($2::bigint[]) ORDER BY id LIMIT $1",
            self.batch_size,
            skip,
        )
        if not rows:
            # Nothing unpublished in this statement's snapshot: the backlog is 0.
            metrics.OUTBOX_BACKLOG.set(0)
            metrics.OUTBOX_OLDEST_AGE.set(0.0)
            return []
        metrics.OUTBOX_OLDEST_AGE.set(max(time.time() - float(rows[0]["at"]), 0.0))
        futures = [
            await self.producer.send(
                row["topic"],
                value=row["value"],
                key=row["key"],
                headers=[(k, v.encode()) for k, v in row["headers"]],
            )
            for row in rows
        ]
        await asyncio.gather(*futures)
        acked = time.time()
        for row in rows:
            metrics.EVENT_HOP_SECONDS.labels("published", row["topic"]).observe(
                max(acked - float(row["at"]), 0.0)
            )
        for topic, n in Counter(row["topic"] for row in rows).items():
            metrics.OUTBOX_PUBLISHED.labels(topic).inc(n)
        if len(rows) < self.batch_size:
            # Every row this snapshot saw went out: nothing older waits.
            metrics.OUTBOX_BACKLOG.set(0)
            metrics.OUTBOX_OLDEST_AGE.set(0.0)
        return [row["id"] for row in rows]

    async def _delete(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        """Delete published rows and gauge what is left, in one statement (it reads the
        snapshot before the DELETE, so the deleted ids are left out by hand). The rows left
        are counted up to `backlog_count_limit`; beyond, the gauge is the span of their ids
        (an upper bound: ids of rolled-back writes count too), so a relay catching up on a
        long backlog does not count all of it at every delete (docs/decisions/0086)."""
        stats: Any = await conn.fetchrow(
            """WITH gone AS (DELETE FROM outbox WHERE id = ANY($1::bigint[])),
               waiting AS (SELECT id, created_at FROM outbox WHERE id <> ALL($1::bigint[])
                           ORDER BY id LIMIT $2)
               SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age,
                      min(id) AS first,
                      (SELECT id FROM outbox WHERE id <> ALL($1::bigint[])
                       ORDER BY id DESC LIMIT 1) AS last
               FROM waiting""",
            ids,
            self.backlog_count_limit,
        )
        n = int(stats["n"])
        if n >= self.backlog_count_limit:
            n = max(n, int(stats["last"]) - int(stats["first"]) + 1)
        metrics.OUTBOX_BACKLOG.set(n)
        metrics.OUTBOX_OLDEST_AGE.set(float(stats["age"] or 0))


def outbox_records(events: Sequence[EventData], *, source: str) -> list[OutboxRecord]:
    """`outbox_record` for a chunk of events written together (an import's batch): one
    producer span for the chunk, not one per event. Every event carries that span's context,
    so the trace still links each consumer's span to where its event was written (as the
    chunk's child); each event keeps its own id."""
    if not events:
        return []
    topics = {e.topic for e in events}
    types = sorted({e.event_type for e in events})
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.batch.message_count": len(events),
    }
    if len(topics) == 1:
        attributes["messaging.destination.name"] = next(iter(topics))
    with _tracer.start_as_current_span(
        f"outbox {types[0] if len(types) == 1 else 'batch'}",
        kind=trace.SpanKind.PRODUCER,
        attributes=attributes,
    ):
        headers = current_trace_headers()
    records = []
    for event in events:
        envelope = Envelope.of(event, source=source, event_id=str(uuid4()), trace=headers)
        records.append(OutboxRecord(event.topic, envelope, encode(envelope)))
    return records


# ---------------------------------------------------------------- rows built in one step

_ENQUEUE_ROWS = """WITH rows AS (
       INSERT INTO outbox (topic, key, value, headers, event_type)
       SELECT topic, key, value, headers::jsonb, event_type
       FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::text[])
           WITH ORDINALITY AS r (topic, key, value, headers, event_type, n)
       ORDER BY n
       RETURNING 1)
   SELECT pg_notify($6, '') FROM (SELECT 1 FROM rows LIMIT 1) AS written"""


@dataclass(frozen=True)
class OutboxWith:
    """One event written by a service's own statement, as part of it: the outbox row and the
    relay's wake-up as CTEs, for each row of another CTE (`when`: a row written only when
    that statement wrote what the event tells of). `sql` goes after the caller's CTEs, its
    parameters numbered from `first`; `args(record, schema)` are their values; `written`,
    an expression of the statement's final select list, counts the rows written (and makes
    the wake-up run: a CTE nobody reads is not run)."""

    first: int
    when: str

    @property
    def sql(self) -> str:
        n = self.first
        # Fixed text: parameter numbers and a CTE's name; the values are bound.
        return (
            f"outbox_row AS (INSERT INTO outbox (topic, key, value, headers, event_type) "  # noqa: S608
            f"SELECT ${n}::text, ${n + 1}::bytea, ${n + 2}::bytea, ${n + 3}::text::jsonb, "
            f"${n + 4}::text FROM {self.when} RETURNING 1), "
            f"outbox_woken AS (SELECT pg_notify(${n + 5}::text, '') FROM outbox_row)"
        )

    written = "(SELECT count(*) FROM outbox_woken)"

    @staticmethod
    def channel(schema: str) -> str:
        """The relay's wake-up channel (for a statement that writes many rows)."""
        return _channel(schema)

    @staticmethod
    def args(record: OutboxRecord, schema: str) -> list[Any]:
        return [
            record.topic,
            record.record.key,
            record.record.value,
            _headers_json(record.record.headers),
            record.envelope.type,
            _channel(schema),
        ]


def _headers_json(headers: Sequence[tuple[str, bytes]]) -> str:
    """A record's headers as the outbox's jsonb column holds them (json.dumps' text of
    [[name, value], ...], as the pool's jsonb codec writes a list)."""
    return json_text([[k, v.decode()] for k, v in headers])


# The headers `funnel_contracts.encode` writes between the event id and the time, per
# (event type, source), as `_headers_json` writes them.
_MIDDLES: dict[tuple[str, str], str] = {}


def _middle(event_type: str, source: str) -> str:
    middle = _MIDDLES.get((event_type, source))
    if middle is None:
        middle = (
            f'], ["ce_source", {_json_string(source)}], ["ce_type", {_json_string(event_type)}],'
            ' ["ce_specversion", "1.0"], ["ce_time", '
        )
        if len(_MIDDLES) < 1024:  # a handful in practice; bounded all the same
            _MIDDLES[(event_type, source)] = middle
    return middle


@dataclass
class OutboxRows:
    """Outbox rows not written yet, held as the columns `enqueue_rows` sends, in order.

    `add` takes an `OutboxRecord`; `add_json` makes a row in one step from an event already
    encoded (a consumer's hot path): the event id, the CloudEvents headers and the outbox's
    headers column are written as text directly, without an `Envelope`, a `KafkaRecord` and
    its headers encoded to bytes and decoded again. Both give the same row for the same event
    (`libs/servicekit/tests/test_kit_outbox_rows.py`).
    """

    topics: list[str] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)  # the headers column's JSON text
    types: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.topics)

    def add(self, record: OutboxRecord) -> None:
        self.topics.append(record.topic)
        self.keys.append(record.record.key)
        self.values.append(record.record.value)
        self.headers.append(_headers_json(record.record.headers))
        self.types.append(record.envelope.type)

    def add_json(
        self,
        event_type: str,
        topic: str,
        subject: str,
        value: bytes,
        *,
        source: str,
        trace: Mapping[str, str] | None = None,
        event_id: str | None = None,
    ) -> str:
        """The row `add(outbox_record_json(...))` gives for an event whose data is already
        encoded (`value`: `funnel_contracts.json_text(data)`'s bytes; the caller's tests
        hold them so), made now (its `ce_time`); returns its event id. `trace` as in
        `outbox_record_json` (None: a producer span of its own, in the current span)."""
        if not source or not event_type:
            raise ValueError("CloudEvents attributes source and type must not be empty")
        if event_id:
            quoted_id = _json_string(event_id)
        else:
            event_id = new_event_id()
            quoted_id = f'"{event_id}"'  # hex digits and hyphens: nothing to escape
        if trace is None:
            trace = _producer_trace(event_type, topic, event_id)
        # As encode writes the time: "Z" for "+00:00"; digits and separators, nothing to escape.
        when = datetime.now(UTC).isoformat()[:-6]
        text = (
            f'[["ce_id", {quoted_id}{_middle(event_type, source)}"{when}Z"], '
            f'["ce_subject", {_json_string(subject)}], ["content-type", "application/json"]'
        )
        for name, header in trace.items():
            if name in TRACE_HEADERS:
                text += f", [{_json_string(name)}, {_json_string(header)}]"
        self.topics.append(topic)
        self.keys.append(subject.encode())
        self.values.append(value)
        self.headers.append(text + "]")
        self.types.append(event_type)
        return event_id


async def enqueue_rows(conn: asyncpg.Connection, schema: str, rows: OutboxRows) -> None:
    """Write `rows` to the outbox in the caller's transaction, in order, and wake the relay:
    one statement for any number of rows (`enqueue_many` for `OutboxRecord`s)."""
    if not rows:
        return
    await conn.execute(
        _ENQUEUE_ROWS,
        rows.topics,
        rows.keys,
        rows.values,
        rows.headers,
        rows.types,
        _channel(schema),
    )
