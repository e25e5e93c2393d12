"""Where a person's data could rest in a running stack, read raw: every table, every log file,
every record of every topic. "Readable" means in the clear, or opened by a data key the
platform still holds (funnel.lead.*.v2 events and activity events' `personal_data` are
sealed with the person's key)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from funnel_contracts import ActivityRecorded, LeadCapturedV2, LeadUpdatedV2, decode, parse_event
from funnel_contracts.sealed import SealError, unseal
from funnel_contracts.topics import all_topics_with_dead_letters
from funnel_devstack.postgres import find_pg_bin_dir
from funnel_devstack.stack import Stack

SEALED_TYPES = {
    LeadCapturedV2.event_type,
    LeadUpdatedV2.event_type,
    ActivityRecorded.event_type,
}


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def raw(self) -> bytes:
        """Key, value and every header name and value, as they are on the wire."""
        parts = [self.key, self.value]
        for name, value in self.headers:
            parts += [name.encode(), value]
        return b"\n".join(parts)


def hits(haystack: bytes, needles: Iterable[str]) -> set[str]:
    """The needles found in the bytes, ignoring case."""
    lowered = haystack.lower()
    return {n for n in needles if n.lower().encode() in lowered}


async def database_dump(stack: Stack) -> bytes:
    """`pg_dump --data-only` of the stack's database: every row of every schema."""
    bin_dir = find_pg_bin_dir()
    assert bin_dir is not None, "pg_dump not found"
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "pg_dump"),
        "--data-only",
        "--no-owner",
        f"--dbname={stack.postgres.dsn}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"COPY intake.leads" in out and b"COPY notifier.contacts" in out  # noqa: PT018
    return out


def log_files(stack: Stack) -> dict[Path, bytes]:
    """Every `*.log` the stack wrote: the services', PostgreSQL's and the mailbox's logs, and
    Kafka's own segment files (the topics as the broker keeps them on disk)."""
    found = {p: p.read_bytes() for p in stack.root.rglob("*.log") if p.is_file()}
    assert any(p.parent == stack.logs for p in found)
    assert any("kafka" in p.parts for p in found)
    return found


async def topic_records(stack: Stack) -> list[RawRecord]:
    """Every record of every topic (dead-letter topics included), read from offset 0."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
    ]
    assert {p.topic for p in partitions} >= set(all_topics_with_dead_letters())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_uncommitted",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[RawRecord] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, rs in batch.items():
                for r in rs:
                    records.append(
                        RawRecord(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key or b"",
                            r.value or b"",
                            tuple((k, v) for k, v in r.headers or ()),
                        )
                    )
                if rs and rs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


def opened(records: Iterable[RawRecord], keys: Mapping[UUID, bytes]) -> tuple[bytes, int]:
    """The personal data of every sealed lead or activity event that a key in `keys` opens, as
    JSON text, and how many opened."""
    texts: list[bytes] = []
    for record in records:
        try:
            envelope = decode(record.key, record.value, list(record.headers))
        except ValueError:
            continue
        if envelope.type not in SEALED_TYPES:
            continue
        event = parse_event(envelope.type, envelope.data)
        assert isinstance(event, LeadCapturedV2 | LeadUpdatedV2 | ActivityRecorded)
        key = keys.get(event.lead_id)
        if key is None or event.personal_data is None:
            continue
        try:
            person = unseal(
                event.personal_data, key=key, lead_id=event.lead_id, event_type=event.event_type
            )
        except SealError:
            continue
        texts.append(person.model_dump_json().encode())
    return b"\n".join(texts), len(texts)


async def data_keys_held(stack: Stack) -> dict[UUID, bytes]:
    """Every data key lead-intake still holds."""
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        rows = await conn.fetch("SELECT lead_id, data_key FROM intake.subject_keys")
    finally:
        await conn.close()
    return {r["lead_id"]: bytes(r["data_key"]) for r in rows}


@dataclass(frozen=True)
class Scan:
    """What of the needles one look at the whole stack found, by place."""

    tables: set[str]
    logs: dict[str, set[str]]
    topics_plain: dict[str, set[str]]
    topics_opened: set[str]
    records: int
    opened_events: int

    def anywhere(self) -> set[str]:
        found = set(self.tables) | self.topics_opened
        for where in (self.logs, self.topics_plain):
            for names in where.values():
                found |= names
        return found

    def report(self) -> str:
        return json.dumps(
            {
                "tables": sorted(self.tables),
                "logs": {k: sorted(v) for k, v in self.logs.items() if v},
                "topics_plain": {k: sorted(v) for k, v in self.topics_plain.items() if v},
                "topics_opened": sorted(self.topics_opened),
            },
            indent=1,
        )


async def scan(stack: Stack, needles: Iterable[str]) -> Scan:
    """Look for every needle in every table, log file and topic record of the stack."""
    wanted = list(needles)
    dump = await database_dump(stack)
    logs = {
        str(p.relative_to(stack.root)): hits(data, wanted) for p, data in log_files(stack).items()
    }
    records = await topic_records(stack)
    plain: dict[str, set[str]] = {}
    for record in records:
        found = hits(record.raw(), wanted)
        if found:
            plain.setdefault(f"{record.topic}/{record.partition}@{record.offset}", set()).update(
                found
            )
    opened_text, opened_count = opened(records, await data_keys_held(stack))
    return Scan(
        tables=hits(dump, wanted),
        logs=logs,
        topics_plain=plain,
        topics_opened=hits(opened_text, wanted),
        records=len(records),
        opened_events=opened_count,
    )
