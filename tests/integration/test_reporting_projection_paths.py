"""reporting's one projection path on the real PostgreSQL: the same events projected one record
at a time (the inbox's record-by-record path) and in partition batches (the live consumer's
and the rebuild's path) leave identical tables, late events of an erased person included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from bench.reporting_dataset import generate
from funnel_contracts import Envelope, EventData, StageChanged
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from funnel_servicekit.inbox import Delivery
from funnel_servicekit.unit_of_work import Outbox
from reporting.projection.consumer import handlers
from reporting.projection.store import ROLLUPS, TABLES
from reporting.settings import MIGRATIONS
from reporting.timeline.models import item_of

pytestmark = pytest.mark.integration

BATCH = 40
KEPT = ("lead_states", "erased_leads", "funnel_stages", "timeline_timeline")
PROJECTED = (
    *KEPT,
    *TABLES,
    *(rollup for levels in ROLLUPS.values() for rollup, _ in levels),
)


def _events() -> tuple[list[EventData], Any]:
    data = generate(60, seed=11)
    erased = data.edge["erased"]
    last = max(
        (e for e in data.events if isinstance(e, StageChanged) and e.lead_id == erased),
        key=lambda e: e.changed_at,
    )
    late = last.model_copy(
        update={"to_stage": "action", "changed_at": last.changed_at + timedelta(days=60)}
    )
    return [*data.events, late], erased


@pytest.fixture
async def pools(fresh_dsn: str) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        for schema in ("one_by_one", "batched"):
            await migrations.apply(conn, schema, MIGRATIONS)
    finally:
        await conn.close()
    made = {
        s: await create_pool(fresh_dsn, s, min_size=1, max_size=1)
        for s in ("one_by_one", "batched")
    }
    try:
        yield made
    finally:
        for pool in made.values():
            await pool.close()


async def _tables(pool: asyncpg.Pool) -> dict[str, list[tuple[str, ...]]]:
    """Every projected table's rows; aggregate rows whose counters are all zero left out (a
    lead that joined and left a row leaves it at zero, a batch that summed both never wrote
    it: the sums are the same)."""
    base = {rollup: t for t, levels in ROLLUPS.items() for rollup, _ in levels}
    out: dict[str, list[tuple[str, ...]]] = {}
    async with pool.acquire() as conn:
        for table in PROJECTED:
            spec = TABLES.get(base.get(table, table))
            keys = [c for c, _ in spec.keys] if spec else []
            values = [c for c, _ in spec.values] if spec else []
            rows = []
            for r in await conn.fetch(f"SELECT * FROM {table}"):  # noqa: S608
                if values and not any(r[c] for c in values):
                    continue
                columns = (
                    [*keys, *values] if spec else [k for k in r.keys() if k[-3:] != "_at"]  # noqa: SIM118
                )
                rows.append(tuple(str(r[c]) for c in columns))
            out[table] = sorted(rows)
    return out


async def test_one_by_one_and_batched_projection_leave_the_same_tables(
    pools: dict[str, asyncpg.Pool],
) -> None:
    events, erased = _events()
    deliveries = [Delivery("funnel.test", Envelope.of(e, source="it"), e) for e in events]
    handle, _ = handlers(Outbox("one_by_one", "reporting"))
    _, handle_batch = handlers(Outbox("batched", "reporting"))
    async with pools["one_by_one"].acquire() as conn:
        for d in deliveries:
            async with conn.transaction():
                await handle(conn, d.envelope, d.event)
    async with pools["batched"].acquire() as conn:
        for start in range(0, len(deliveries), BATCH):
            async with conn.transaction():
                await handle_batch(conn, deliveries[start : start + BATCH])

    one_by_one, batched = await _tables(pools["one_by_one"]), await _tables(pools["batched"])
    assert one_by_one == batched
    # Not two empty results: every lead counted in a stage, one person erased, no detail row
    # of theirs left after their late event.
    assert len(batched["lead_states"]) > 50
    assert sum(int(r[-1]) for r in batched["stage_counts"]) == len(batched["lead_states"])
    assert [r[0] for r in batched["erased_leads"]] == [str(erased)]
    assert str(erased) not in {r[0] for r in batched["lead_states"]}
    # One timeline item per distinct event of the people not erased, none of the erased one,
    # every open and click knowing its touch's playbook.
    items = {(i.lead_id, i.at, i.key) for e in events if e.lead_id != erased and (i := item_of(e))}
    assert len(batched["timeline_timeline"]) == len(items) > 5 * len(batched["lead_states"]) // 2
    assert str(erased) not in {r[0] for r in batched["timeline_timeline"]}
    responses = [
        r for r in batched["timeline_timeline"] if r[3] in ("touch_opened", "touch_clicked")
    ]
    assert responses
    assert all("'playbook': None" not in r[4] for r in responses)
