"""What the reporting integration tests share: publishing events, the service, its API."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID, uuid5

import asyncpg
import httpx

from funnel_contracts import Envelope, EventData, LeadMerged, encode
from funnel_contracts.topics import ALL_TOPICS
from funnel_devstack.stack import Stack
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from funnel_servicekit.kafka import create_producer
from reporting.settings import MIGRATIONS
from tests.integration.kit_support import end_offsets, eventually, kafka_admin


async def publish(stack: Stack, events: Sequence[EventData], duplicates: Sequence[int] = ()) -> int:
    """Publish events (CloudEvents binary mode) in order; the indexes in `duplicates` twice,
    with the same event id, as a redelivering producer would. Returns records sent."""
    producer = create_producer(stack.kafka_bootstrap, "reporting-test")
    await producer.start()
    twice = set(duplicates)
    sent = 0
    try:
        for i, event in enumerate(events):
            record = encode(Envelope.of(event, source="test/generator"))
            for _ in range(2 if i in twice else 1):
                await producer.send(
                    event.topic, value=record.value, key=record.key, headers=record.headers
                )
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def consumed_everything(bootstrap: str, group: str = "reporting") -> bool:
    """Whether `group` has committed the end of every partition of every funnel topic."""
    async with kafka_admin(bootstrap) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    for topic in ALL_TOPICS:
        for partition, end in (await end_offsets(bootstrap, topic)).items():
            if end > 0 and committed.get((topic, partition), -1) < end:
                return False
    return True


async def publish_in_phases(
    stack: Stack,
    events: Sequence[EventData],
    duplicates: Sequence[int],
    phases: Sequence[int | None],
    timeout: float = 120,
) -> None:
    """Publish the events phase by phase (`phases`: the indexes where the later phases
    begin, such as a dataset's merge_phase and erase_phase), each once reporting has
    consumed every topic: a merge is made once both leads are known, an erasure after it."""
    cuts = [0, *sorted({p for p in phases if p is not None}), len(events)]
    for lo, hi in itertools.pairwise(cuts):
        if lo == hi:
            continue
        twice = [i - lo for i in duplicates if lo <= i < hi]
        await publish(stack, events[lo:hi], twice)
        await eventually(
            lambda: consumed_everything(stack.kafka_bootstrap),
            lambda done: done,
            timeout=timeout,
            what="every topic consumed by reporting",
        )


async def get(stack: Stack, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(
        base_url=stack.url("reporting"),
        headers={"Authorization": f"Bearer {stack.admin_api_key}"},
        timeout=30,
    ) as client:
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.text if params.get("format") == "csv" else response.json()


def counts_by_group(body: dict[str, Any]) -> dict[tuple[str | None, str | None], list[int]]:
    return {(g["cohort"], g["segment"]): [s["leads"] for s in g["steps"]] for g in body["groups"]}


def own_people(events: list[EventData], salt: str) -> list[EventData]:
    """The same events with every lead id replaced by one derived from it and `salt`."""

    def own(lead: UUID) -> UUID:
        return uuid5(lead, salt)

    out: list[EventData] = []
    for e in events:
        update: dict[str, UUID] = {"lead_id": own(e.lead_id)}
        if isinstance(e, LeadMerged):
            update["merged_lead_id"] = own(e.merged_lead_id)
        out.append(e.model_copy(update=update))
    return out


@contextlib.asynccontextmanager
async def schema_pools(
    dsn: str, schemas: Sequence[str], *, max_size: int
) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """Reporting migrated into each schema of one database, with a pool on each: the same
    events projected side by side, one way per schema."""
    conn = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            await migrations.apply(conn, schema, MIGRATIONS)
    finally:
        await conn.close()
    made = {s: await create_pool(dsn, s, min_size=1, max_size=max_size) for s in schemas}
    try:
        yield made
    finally:
        for pool in made.values():
            await pool.close()
