"""The inbox consumer: each event processed exactly once into PostgreSQL.

For every record, in partition order: decode it (poison -> dead-letter topic), then record
(source, id) in the inbox table and run the handler in the same transaction (one per poll,
a savepoint per partition's batch and per record); a duplicate finds its inbox row and changes
nothing. Offsets are committed to Kafka only after the database commit. Transient failures
(database or broker down) are retried in place, never skipped; a handler that keeps failing
on the same event is retried a bounded number of times, then the record goes to the
dead-letter topic with the error in its headers.

A service may also pass a `batch_handler`: the fresh events of a partition's batch at once
(inbox rows written in one statement), so that it can load and write its state set-based;
with `batch_per_poll`, the fresh events of the whole poll at once (each partition's in order). If
the batch holds a poison record or the batch handler fails, the batch is rolled back to its
savepoint and processed record by record as above, so dead letters work exactly the same.

The fixed cost of a poll is kept small (docs/decisions/0070): with a batch handler, a poll's
fresh events of every partition get their inbox rows in one statement and no savepoint (a
poison record or a failing batch handler rolls the poll's transaction back, and it is done
again the careful way above); the offsets go to Kafka at most every `commit_interval_seconds`
(and when the consumer stops), since a redelivered event is a no-op; the lag gauge is read at
most every `lag_interval_seconds`.

With `polls_in_flight` above one (decision 0094; the tracker runs two), the next poll is
decoded while the one ahead runs, and its transaction begins once the one ahead holds every
row it will lock (its batch handler calls `rows_held()`); it commits only after the one ahead
committed, and is rolled back and done again after it if that one did not. The Python work of
one poll so runs while PostgreSQL works on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry import trace

from funnel_contracts import DecodeError, Envelope, EventData, SchemaError, decode_event
from funnel_contracts.topics import dead_letter_topic
from funnel_servicekit import metrics
from funnel_servicekit.db import DATABASE_UNREACHABLE
from funnel_servicekit.kafka import (
    FATAL_PRODUCER_ERRORS,
    ProducerFactory,
    RenewableProducer,
    client_security,
    consumer_tuning,
)
from funnel_servicekit.telemetry import context_from_headers

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope, EventData], Awaitable[None]]


@dataclass(frozen=True)
class Delivery:
    """One fresh event of a batch (its inbox row written in this transaction)."""

    topic: str
    envelope: Envelope
    event: EventData


BatchHandler = Callable[[asyncpg.Connection, Sequence[Delivery]], Awaitable[None]]
Decoded = list[tuple[ConsumerRecord[Any, Any], Envelope, EventData | None]]
Parts = list[tuple[TopicPartition, list[ConsumerRecord[Any, Any]]]]
_tracer = trace.get_tracer(__name__)

# A pipelined consumer's signal that the running batch handler holds its rows (`rows_held`).
_ROWS_HELD: ContextVar[asyncio.Event | None] = ContextVar("funnel_rows_held", default=None)

# How long a poll, ready to commit, waits for the poll ahead of it to commit. Past it (the one
# ahead may be waiting for a lock this one holds: a handler that broke the `rows_held`
# promise) this one is rolled back and done again after the one ahead: slower, never stuck.
AHEAD_WAIT_SECONDS = 5.0


def rows_held() -> None:
    """A batch handler's promise, once it has taken its locks: from here to its commit, its
    transaction waits for no lock another transaction could take meanwhile (every row it
    will write is locked or its own). A pipelined consumer then begins the next poll's
    transaction (decision 0094); elsewhere this does nothing."""
    held = _ROWS_HELD.get()
    if held is not None:
        held.set()


@contextlib.contextmanager
def consume_span(topic: str, envelope: Envelope) -> Iterator[trace.Span]:
    """The consumer span of one event, child of its producer's (through the trace headers).

    A batch handler opens it around each event's work, so that what it enqueues for that
    event carries that event's trace.
    """
    with _tracer.start_as_current_span(
        f"consume {envelope.type}",
        context=context_from_headers(envelope.trace),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.message.id": envelope.id,
        },
    ) as span:
        yield span


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    *DATABASE_UNREACHABLE,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    KafkaError,
)


# OSErrors about local files say "this code or its deployment is wrong", not "try again
# later": retried in place they would stall the partition forever instead of dead-lettering.
LOCAL_OS_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


# With `batch_wait_ms`, a fetch ends early only once this much is waiting (a busy topic's
# batch), else after the wait.
BATCH_WAIT_BYTES = 1024 * 1024


class _Behind(Exception):
    """The poll ahead did not commit its first attempt (or kept this one waiting too long):
    this one is rolled back and done again once that one has finished."""


class _Abandoned(Exception):
    """The poll ahead failed for good: this one is not processed (the consumer restarts
    from the committed offsets, both polls are delivered again)."""


@dataclass
class _PollWork:
    """What one poll's processing collects (two may be in flight)."""

    # (topic, event time) of the events processed in the poll's open transaction.
    processed: list[tuple[str, datetime]] = field(default_factory=list)
    # Dead letters found inside the poll's transaction: sent once it has ended (no network
    # call inside a transaction), before the poll's offsets are committed.
    dead_letters_due: list[tuple[ConsumerRecord[Any, Any], str]] = field(default_factory=list)
    # Sent by an earlier attempt at the poll: not sent again.
    dead_lettered: set[tuple[str, int, int]] = field(default_factory=set)


class _Turn:
    """A pipelined consumer's poll in flight, as the poll after it sees it.

    `held`: the next poll's transaction may begin (this one's batch handler called
    `rows_held`, or its first attempt ended). `first`: whether that first attempt committed;
    the next poll commits only after it did.
    """

    def __init__(self, ahead: _Turn | None) -> None:
        self.ahead = ahead
        self.held = asyncio.Event()
        self.first: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[dict[TopicPartition, int]] | None = None

    def first_ended(self, committed: bool) -> None:
        if not self.first.done():
            self.first.set_result(committed)
        self.held.set()

    def done(self) -> bool:
        return self.task is not None and self.task.done()

    async def finished(self) -> None:
        """Wait until this poll is done; `_Abandoned` if it failed."""
        assert self.task is not None
        await asyncio.wait([self.task])
        if self.task.cancelled() or self.task.exception() is not None:
            raise _Abandoned

    async def abandon(self) -> None:
        """Cancel this poll (never committed: it waits for the one ahead) and wait for it."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait([self.task])


class _CarefulWay(Exception):
    """A poll done at once failed: roll it back and do it a savepoint per batch."""


def is_transient(exc: BaseException) -> bool:
    """Errors that say "try again later", not "this event is bad"."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, LOCAL_OS_ERRORS)


class InboxConsumer:
    """Consumes topics into a handler, exactly once per (source, event id)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        bootstrap_servers: str,
        group_id: str,
        topics: Collection[str],
        handler: Handler,
        handled_types: Collection[str],
        max_attempts: int = 3,
        batch_handler: BatchHandler | None = None,
        max_poll_records: int = 200,
        producer_factory: ProducerFactory | None = None,
        commit_interval_seconds: float = 1.0,
        lag_interval_seconds: float = 1.0,
        batch_per_poll: bool = False,
        batch_wait_ms: int | None = None,
        polls_in_flight: int = 1,
    ) -> None:
        if polls_in_flight > 1 and (batch_handler is None or not batch_per_poll):
            raise ValueError("polls in flight need a batch handler with batch_per_poll")
        self.pool = pool
        # Dead letters go out with it; a new one replaces it when its session is lost for good.
        self._producer = RenewableProducer(producer, producer_factory)
        self.group_id = group_id
        self.topics = list(topics)
        self.handler = handler
        self.batch_handler = batch_handler
        self.handled_types = set(handled_types)
        self.max_attempts = max_attempts
        self.bootstrap_servers = bootstrap_servers
        self.max_poll_records = max_poll_records
        # The batch handler gets a whole poll's fresh events at once (every partition's, each
        # partition's in order, one after the other) instead of a call per partition.
        self.batch_per_poll = batch_per_poll
        # A consumer off the latency-critical path may let the broker hold each fetch up to
        # this long for more records (fetch_min_bytes high): fewer, larger polls, so fewer
        # transactions per event. None: the kit's tuning (a record ends the wait at once).
        self.batch_wait_ms = batch_wait_ms
        # More than one: a pipeline (decision 0094), the batch handler calls `rows_held()`.
        self.polls_in_flight = polls_in_flight
        self.commit_interval_seconds = commit_interval_seconds
        self.lag_interval_seconds = lag_interval_seconds
        # Offsets whose effects are committed in PostgreSQL, not yet in Kafka.
        self._pending_offsets: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._last_lag = 0.0
        self.consumer = self._new_consumer()
        self._runs = 0
        self._stopping = asyncio.Event()
        self._tracer = trace.get_tracer(__name__)

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer dead letters go out with (a new one after a lost session)."""
        return self._producer.current

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            # Across all assigned partitions: a batch handler gains from larger fetches.
            max_poll_records=self.max_poll_records,
            **(
                consumer_tuning()
                if not self.batch_wait_ms
                else {"fetch_max_wait_ms": self.batch_wait_ms, "fetch_min_bytes": BATCH_WAIT_BYTES}
            ),
            **client_security(),
        )

    def stop(self) -> None:
        """Stop fetching; the batch in hand is finished and committed first."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until stopped. Runs again after it ended (the supervisor restarts a loop
        that crashed): a stopped aiokafka consumer cannot start again, so each run has a new
        one, which resumes from the group's committed offsets."""
        if self._runs:
            self.consumer = self._new_consumer()
        self._runs += 1
        await self._start_consumer()
        self._pending_offsets.clear()
        inflight: deque[_Turn] = deque()  # a pipelined consumer's polls in flight, oldest first
        try:
            while not self._stopping.is_set():
                batch = await self.consumer.getmany(timeout_ms=500)
                parts = [(tp, records) for tp, records in batch.items() if records]
                if self.polls_in_flight > 1:
                    if parts:
                        ahead = inflight[-1] if inflight else None
                        inflight.append(self._start_poll(parts, ahead))
                    # The oldest poll's offsets once it is done: waited for when the pipeline
                    # is full or nothing came (idle), else taken if it is done already.
                    while inflight and (
                        not parts or len(inflight) >= self.polls_in_flight or inflight[0].done()
                    ):
                        self._pending_offsets.update(await self._finish_poll(inflight))
                else:
                    self._pending_offsets.update(await self._process_poll(parts))
                now = time.monotonic()
                if self._pending_offsets and now - self._last_commit >= (
                    self.commit_interval_seconds
                ):
                    # One round trip to the group coordinator for the polls of the interval,
                    # after their transactions committed (a crash in between redelivers what
                    # the inbox already holds: no-ops).
                    await self._commit_pending()
                if now - self._last_lag >= self.lag_interval_seconds:
                    self._last_lag = now
                    await self._record_lag()
            while inflight:
                self._pending_offsets.update(await self._finish_poll(inflight))
            if self._pending_offsets:
                await self._commit_pending()  # a drain: what was processed is committed
        finally:
            while inflight:
                await inflight.pop().abandon()  # the newest first: none commits before another
            await self.consumer.stop()
            await self._producer.close()

    async def _commit_pending(self) -> None:
        """Commit the offsets processed so far, for the partitions still assigned (a revoked
        one resumes from its last commit elsewhere: its redelivered events are no-ops)."""
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self._pending_offsets.items() if tp in assigned}
        self._pending_offsets.clear()
        self._last_commit = time.monotonic()
        if offsets:
            await self._commit(offsets)

    async def _start_consumer(self) -> None:
        while True:
            try:
                await self.consumer.start()
                return
            except KafkaError:
                if self._stopping.is_set():
                    raise
                log.warning("broker not reachable; retrying consumer start")
                await asyncio.sleep(1.0)

    def _start_poll(self, parts: Parts, ahead: _Turn | None) -> _Turn:
        """A pipelined consumer's next poll, processed in a task of its own while the poll
        `ahead` finishes."""
        turn = _Turn(ahead)
        turn.task = asyncio.create_task(self._process_poll(parts, turn))
        return turn

    @staticmethod
    async def _finish_poll(inflight: deque[_Turn]) -> dict[TopicPartition, int]:
        """The offsets to commit once the oldest poll in flight is done (it leaves `inflight`).
        If it failed, the polls after it (each commits only after the one ahead) are
        cancelled and the error raised."""
        turn = inflight[0]
        assert turn.task is not None
        try:
            offsets = await turn.task
        except BaseException:
            inflight.popleft()
            while inflight:
                await inflight.pop().abandon()
            raise
        inflight.popleft()
        return offsets

    async def _process_poll(
        self, parts: Parts, turn: _Turn | None = None
    ) -> dict[TopicPartition, int]:
        """Process what one poll fetched, every partition's records in order, in one
        transaction (a savepoint per partition's batch and per record); returns the offsets
        to commit.

        One commit (one fsync) per poll instead of one per partition or per event: at modest
        rates a poll holds a few records from many partitions, and a commit each made events
        wait behind each other's fsyncs. A record whose handler fails rolls back only its own
        savepoint. A transient error rolls back the whole poll, which is then retried from
        its first records (the inbox rows went with it, so nothing is skipped).

        `turn`: this poll's place in a pipeline (decision 0094): it begins once the poll ahead
        holds its rows and commits only after it; it tells the poll after it when it holds
        its own rows and how its first attempt ended.
        """
        if not parts:
            return {}
        work = _PollWork()
        delay = 0.2
        at_once = self.batch_handler is not None
        # Decoded before anything waits (in a pipeline, while the poll ahead runs).
        decoded = self._decoded_parts(parts) if at_once else None
        ahead = turn.ahead if turn is not None else None
        first = turn
        while True:
            work.processed.clear()
            work.dead_letters_due.clear()
            committed = False
            try:
                try:
                    if ahead is not None:
                        ahead = await self._wait_for_rows(ahead)
                    async with self.pool.acquire() as conn, conn.transaction():
                        if not (
                            at_once
                            and await self._process_poll_at_once(conn, parts, decoded, work, first)
                        ):
                            for _, records in parts:
                                if not await self._process_batch(conn, records, work):
                                    for record in records:
                                        await self._process(conn, record, work)
                        if ahead is not None:
                            await self._wait_for_commit(ahead)
                    committed = True
                finally:
                    # Told as soon as the transaction ended (before any wait or retry): the
                    # polls after this one overlap its first attempt only.
                    if first is not None:
                        first.first_ended(committed)
                        first = None
                break
            except _Behind:
                assert ahead is not None
                await ahead.finished()  # rolled back: the poll again, after the one ahead
                ahead = None
                continue
            except _CarefulWay:
                at_once = False  # rolled back: the poll again, a savepoint per batch
                continue
            except Exception as exc:
                if not is_transient(exc) or self._stopping.is_set():
                    raise  # uncommitted: the batch is redelivered after the restart
                log.warning("transient failure; retrying the batch", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for record, error in work.dead_letters_due:
            await self._send_dead_letter(record, error, work)
        ended = datetime.now(UTC)
        for topic, at in work.processed:
            hop = (ended - at).total_seconds()
            metrics.EVENT_HOP_SECONDS.labels("committed", topic).observe(max(hop, 0.0))
        return {tp: records[-1].offset + 1 for tp, records in parts}

    @staticmethod
    async def _wait_for_rows(ahead: _Turn) -> _Turn | None:
        """Wait until the poll ahead holds its rows. None: nothing more to wait for (its
        first attempt committed, or did not and it has finished since)."""
        await ahead.held.wait()
        if not ahead.first.done():
            return ahead
        if not ahead.first.result():
            await ahead.finished()
        return None

    @staticmethod
    async def _wait_for_commit(ahead: _Turn) -> None:
        """Before this poll commits: the poll ahead committed, else `_Behind`."""
        try:
            committed = await asyncio.wait_for(asyncio.shield(ahead.first), AHEAD_WAIT_SECONDS)
        except TimeoutError:
            log.warning("the poll ahead kept this one waiting; the poll again, after it")
            committed = False
        if not committed:
            raise _Behind

    async def _process_poll_at_once(
        self,
        conn: asyncpg.Connection,
        parts: Parts,
        decoded: list[Decoded] | None,
        work: _PollWork,
        turn: _Turn | None,
    ) -> bool:
        """Every partition's batch through `batch_handler` in the poll's transaction, with one
        inbox statement for them all and no savepoint. False, before writing anything: a
        record is poison (the careful way dead-letters it). A batch handler that fails (not
        transiently) raises `_CarefulWay`: the transaction is rolled back and the poll is done
        again with a savepoint per batch, falling back to record by record. `turn`: a pipelined
        poll's first attempt, whose batch handler may say its rows are held (`rows_held`)."""
        assert self.batch_handler is not None
        if decoded is None:
            return False
        wanted = [(r, e, ev) for batch in decoded for r, e, ev in batch if ev is not None]
        outcomes: list[tuple[str, str, str]] = []
        processed: list[tuple[str, datetime]] = []
        try:
            fresh = await self._insert_inbox(conn, [e for _, e, _ in wanted])
            deliveries: list[Delivery] = []
            for batch in decoded:
                if not self.batch_per_poll:
                    deliveries = []
                deliveries += _first_copies(batch, fresh, outcomes)
                if deliveries and not self.batch_per_poll:
                    await self.batch_handler(conn, deliveries)
                    processed += [(d.topic, d.envelope.time) for d in deliveries]
            if deliveries and self.batch_per_poll:
                token = _ROWS_HELD.set(turn.held if turn is not None else None)
                try:
                    await self.batch_handler(conn, deliveries)
                finally:
                    _ROWS_HELD.reset(token)
                processed += [(d.topic, d.envelope.time) for d in deliveries]
        except Exception as exc:
            if is_transient(exc):
                raise  # the poll is retried as a whole
            log.warning("batch handler failed; the careful way", extra={"error": repr(exc)})
            raise _CarefulWay from exc
        work.processed.extend(processed)
        for (topic, event_type, outcome), n in Counter(outcomes).items():
            metrics.EVENTS_CONSUMED.labels(topic, event_type, outcome).inc(n)
        return True

    def _decoded_parts(self, parts: Parts) -> list[Decoded] | None:
        """Every partition's records decoded; None when one is poison."""
        decoded: list[Decoded] = []
        for _, records in parts:
            batch = self._decoded(records)
            if batch is None:
                return None
            decoded.append(batch)
        return decoded

    def _decoded(self, records: list[ConsumerRecord[Any, Any]]) -> Decoded | None:
        """Each record's envelope and event (None: a type this consumer does not handle);
        None when one is poison (undecodable, or a type no contract knows)."""
        decoded: Decoded = []
        for record in records:
            try:
                # The record's bytes straight into the event's model (no dict in between);
                # a type no contract knows is poison too.
                envelope, event = decode_event(
                    record.key, record.value, record.headers or (), self.handled_types
                )
            except (DecodeError, SchemaError):
                return None  # poison: the record-by-record path dead-letters it
            decoded.append((record, envelope, event))
        return decoded

    @staticmethod
    async def _insert_inbox(
        conn: asyncpg.Connection, envelopes: Sequence[Envelope]
    ) -> set[tuple[str, str]]:
        """The inbox rows of these events in one statement; the (source, id) newly written."""
        if not envelopes:
            return set()
        return {
            (row["source"], row["event_id"])
            for row in await conn.fetch(
                "INSERT INTO inbox (source, event_id, event_type)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
                " ON CONFLICT DO NOTHING RETURNING source, event_id",
                [e.source for e in envelopes],
                [e.id for e in envelopes],
                [e.type for e in envelopes],
            )
        }

    async def _process_batch(
        self, conn: asyncpg.Connection, records: list[ConsumerRecord[Any, Any]], work: _PollWork
    ) -> bool:
        """The batch through `batch_handler` at once; False: go record by record instead."""
        if self.batch_handler is None:
            return False
        decoded = self._decoded(records)
        if decoded is None:
            return False
        wanted = [(r, e, ev) for r, e, ev in decoded if ev is not None]
        outcomes: list[tuple[str, str, str]] = []
        try:
            async with conn.transaction():  # a savepoint: a failed batch leaves no trace
                fresh = await self._insert_inbox(conn, [e for _, e, _ in wanted])
                deliveries = _first_copies(wanted, fresh, outcomes)
                if deliveries:
                    await self.batch_handler(conn, deliveries)
        except Exception as exc:
            if is_transient(exc):
                raise  # the batch is retried as a whole
            log.warning("batch handler failed; record by record", extra={"error": repr(exc)})
            return False
        work.processed.extend((d.topic, d.envelope.time) for d in deliveries)
        outcomes += [(r.topic, e.type, "ignored") for r, e, ev in decoded if ev is None]
        # Counted once per (topic, type, outcome) of the batch, not once per event.
        for (topic, event_type, outcome), n in Counter(outcomes).items():
            metrics.EVENTS_CONSUMED.labels(topic, event_type, outcome).inc(n)
        return True

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        while True:
            try:
                await self.consumer.commit(offsets)
                return
            except CommitFailedError:
                # A partition moved to another member; it resumes from the last commit and
                # the inbox turns the redelivered events into no-ops.
                log.warning(
                    "offset commit refused after a rebalance",
                    extra={"tps": sorted(str(tp) for tp in offsets)},
                )
                return
            except KafkaError:
                log.warning("offset commit failed; retrying")
                await asyncio.sleep(0.5)

    async def _process(
        self, conn: asyncpg.Connection, record: ConsumerRecord[Any, Any], work: _PollWork
    ) -> None:
        try:
            # A type no contract knows raises SchemaError: a producer's bug, not an event
            # meant for others.
            envelope, found = decode_event(
                record.key, record.value, record.headers or (), self.handled_types
            )
        except (DecodeError, SchemaError) as exc:
            self._dead_letter(record, exc, work)
            return
        if found is None:
            metrics.EVENTS_CONSUMED.labels(record.topic, envelope.type, "ignored").inc()
            return
        event = found
        parent = context_from_headers(envelope.trace)
        with self._tracer.start_as_current_span(
            f"consume {envelope.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.message.id": envelope.id,
            },
        ):
            await self._handle_with_retries(conn, record, envelope, event, work)

    async def _handle_with_retries(
        self,
        conn: asyncpg.Connection,
        record: ConsumerRecord[Any, Any],
        envelope: Envelope,
        event: EventData,
        work: _PollWork,
    ) -> None:
        failures = 0
        while True:
            try:
                outcome = await self._handle_once(conn, envelope, event)
                metrics.EVENTS_CONSUMED.labels(record.topic, envelope.type, outcome).inc()
                if outcome == "processed":
                    work.processed.append((record.topic, envelope.time))
                return
            except Exception as exc:
                if is_transient(exc):
                    raise  # the batch is retried as a whole
                failures += 1
                log.exception("handler failed", extra={"attempt": failures})
                if failures >= self.max_attempts:
                    self._dead_letter(record, exc, work)
                    return
                await asyncio.sleep(min(0.1 * 2**failures, 2.0))

    async def _handle_once(
        self, conn: asyncpg.Connection, envelope: Envelope, event: EventData
    ) -> str:
        async with conn.transaction():  # a savepoint inside the batch's transaction
            fresh = await conn.fetchval(
                "INSERT INTO inbox (source, event_id, event_type) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING true",
                envelope.source,
                envelope.id,
                envelope.type,
            )
            if not fresh:
                return "duplicate"
            await self.handler(conn, envelope, event)
            return "processed"

    @staticmethod
    def _dead_letter(record: ConsumerRecord[Any, Any], exc: BaseException, work: _PollWork) -> None:
        """Due for the dead-letter topic once the poll's transaction has ended."""
        where = (record.topic, record.partition, record.offset)
        if where in work.dead_lettered:
            return  # sent before this poll was retried: the topic holds it once
        work.dead_letters_due.append((record, f"{type(exc).__name__}: {exc}"[:2000]))

    async def _send_dead_letter(
        self, record: ConsumerRecord[Any, Any], error: str, work: _PollWork
    ) -> None:
        """To the dead-letter topic (retried until the broker takes it), after the batch's
        transaction ended; then noted in `dead_letters`."""
        where = (record.topic, record.partition, record.offset)
        if where in work.dead_lettered:
            return
        headers = [
            *(record.headers or []),
            ("dlq_error", error.encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_consumer_group", self.group_id.encode()),
        ]
        target = dead_letter_topic(record.topic)
        delay = 0.2
        while True:
            try:
                await self.producer.send_and_wait(
                    target, value=record.value, key=record.key, headers=headers
                )
                break
            except FATAL_PRODUCER_ERRORS:
                # The shared producer will never send again: dead-letter with a new one (the
                # record is still uncommitted, so nothing is lost while this retries).
                log.exception("producer session lost; dead-lettering with a new producer")
                await self._producer.renew()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except KafkaError:
                log.warning("dead-letter publish failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        work.dead_lettered.add(where)
        await self._note_dead_letter(record, error)
        metrics.DEAD_LETTERS.labels(record.topic).inc()
        log.error(
            "record sent to the dead-letter topic",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": error[:300],
            },
        )

    async def _note_dead_letter(self, record: ConsumerRecord[Any, Any], error: str) -> None:
        delay = 0.2
        while True:
            try:
                await self.pool.execute(
                    'INSERT INTO dead_letters (topic, partition, "offset", error)'
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    record.topic,
                    record.partition,
                    record.offset,
                    error,
                )
                return
            except TRANSIENT_ERRORS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _record_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                pos = await self.consumer.position(tp)
            except Exception:  # the partition was revoked between the two calls
                log.debug("no position for %s", tp)
                continue
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - pos, 0))


def _first_copies(
    batch: Sequence[tuple[ConsumerRecord[Any, Any], Envelope, EventData | None]],
    fresh: set[tuple[str, str]],
    outcomes: list[tuple[str, str, str]],
) -> list[Delivery]:
    """The batch's events the inbox had not seen (`fresh`: the keys its INSERT just wrote),
    each once: a second copy in the batch is a duplicate, a record of a type not handled is
    ignored. Each record's outcome is added to `outcomes`."""
    deliveries: list[Delivery] = []
    for record, envelope, event in batch:
        if event is None:
            outcomes.append((record.topic, envelope.type, "ignored"))
            continue
        key = (envelope.source, envelope.id)
        if key in fresh:
            fresh.discard(key)
            deliveries.append(Delivery(record.topic, envelope, event))
            outcomes.append((record.topic, envelope.type, "processed"))
        else:
            outcomes.append((record.topic, envelope.type, "duplicate"))
    return deliveries
