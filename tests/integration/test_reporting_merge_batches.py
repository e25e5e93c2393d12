"""Merges through reporting's projection on the real PostgreSQL, whatever the batches: the
events of a generated history with merges projected one record at a time, and with each
phase (before the merges, the merges, the erasures) in batches of its own, leave the
snapshot the oracle computes; and a survivor erased in the batch of its merge
takes the other lead with it, as it does in a later batch."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from uuid import UUID

import asyncpg
import pytest

from bench.reporting_dataset import START, _capture, _stage, generate
from funnel_contracts import Envelope, EventData, LeadErased, LeadMerged
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.unit_of_work import Outbox
from reporting.projection.consumer import handlers
from tests.integration.reporting_oracle import Oracle
from tests.integration.reporting_support import schema_pools

pytestmark = pytest.mark.integration

SCHEMAS = ("one_by_one", "phased", "apart", "together")


@pytest.fixture
async def pools(fresh_dsn: str) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    async with schema_pools(fresh_dsn, SCHEMAS, max_size=1) as made:
        yield made


async def _project(pool: asyncpg.Pool, schema: str, batches: Sequence[Sequence[EventData]]) -> None:
    _, handle_batch = handlers(Outbox(schema, "reporting"))
    async with pool.acquire() as conn:
        for batch in batches:
            deliveries = [Delivery("funnel.test", Envelope.of(e, source="it"), e) for e in batch]
            async with conn.transaction():
                await handle_batch(conn, deliveries)


async def _snapshot(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT stage, leads FROM stage_counts WHERE leads <> 0")
    return {r["stage"]: int(r["leads"]) for r in rows}


async def test_merges_give_the_oracles_snapshot_one_by_one_and_in_phases(
    pools: dict[str, asyncpg.Pool],
) -> None:
    data = generate(60, seed=5, merges=6)
    assert data.merge_phase is not None
    assert data.erase_phase is not None
    events = data.events
    expected = Oracle(events).snapshot()
    await _project(pools["one_by_one"], "one_by_one", [[e] for e in events])
    cuts = [0, data.merge_phase, data.erase_phase, len(events)]
    phases = [events[a:b] for a, b in itertools.pairwise(cuts)]
    await _project(
        pools["phased"], "phased", [p[i : i + 40] for p in phases for i in range(0, len(p), 40)]
    )
    # Not vacuous: merges took leads out of the count, one person's two leads were erased.
    unmerged = Oracle([e for e in events if not isinstance(e, LeadMerged)]).snapshot()
    assert sum(unmerged.values()) - sum(expected.values()) == 6
    for schema in ("one_by_one", "phased"):
        assert await _snapshot(pools[schema]) == expected, schema


def _two_leads_of_one_person() -> tuple[list[EventData], UUID, UUID]:
    rng = random.Random(3)
    survivor, other = (
        UUID(int=rng.getrandbits(128), version=4),
        UUID(int=rng.getrandbits(128), version=4),
    )
    first = [
        _capture(rng, survivor, START),
        _stage(survivor, "awareness", START, None),
        _capture(rng, other, START + timedelta(days=1)),
        _stage(other, "awareness", START + timedelta(days=1), None),
    ]
    return first, survivor, other


async def test_a_survivor_erased_in_the_batch_of_its_merge_takes_the_other_lead_along(
    pools: dict[str, asyncpg.Pool],
) -> None:
    first, survivor, other = _two_leads_of_one_person()
    merged = LeadMerged(
        lead_id=survivor,
        merged_lead_id=other,
        reason="manual",
        merged_at=first[-1].changed_at,  # type: ignore[attr-defined]
    )
    erased = LeadErased(lead_id=survivor, request_id=other, erased_at=merged.merged_at)
    await _project(pools["apart"], "apart", [first, [merged], [erased]])
    await _project(pools["together"], "together", [first, [merged, erased]])
    assert await _snapshot(pools["apart"]) == {}  # the person is forgotten: no lead counts
    assert await _snapshot(pools["together"]) == {}
