"""With the kit's session settings, a consumer's batch statements probe indexes for the
batch's few keys instead of reading whole tables of a few thousand rows (decision 0091).

Each statement keeps the generic plan made at its first call on a connection (decision 0083),
which assumes an array of ten keys. With PostgreSQL's default `random_page_cost` (4, a
disk's seek), reading a table of a few thousand rows and hashing it looked cheaper than ten
index probes, so reporting's lock of a batch's lead states and the tracker's load of its
leads read every row of their table on each batch, more as the tables grew. The kit sends
`random_page_cost = 1.1` (the tables are in memory). Here, on 3,000 rows, 1,000 of them
analyzed, the statements run on a connection of the kit and on one with the default, under
PostgreSQL's `auto_explain`: the kit's read by index, the default's read the table (the
control). The third is reporting's batch write with touches' sends, which gives each send's
playbook to the opens and clicks of its touch that the timeline holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from funnel_servicekit import migrations
from funnel_servicekit.db import RANDOM_PAGE_COST, create_pool
from reporting.projection import store as reporting_store
from reporting.projection.models.contributions import Deltas
from reporting.settings import MIGRATIONS as REPORTING
from reporting.timeline.models import Item
from stage_tracker.app import MIGRATIONS as TRACKER
from stage_tracker.moves.store import leads as tracker_store

pytestmark = pytest.mark.integration

FIRST, GROWN = 1_000, 2_000
Statement = Callable[[asyncpg.Connection, list[UUID]], Awaitable[object]]


async def _plans(
    dsn: str,
    schema: str,
    folder: Path,
    rows: str,
    table: str,
    statement: Statement,
    random_page_cost: float,
) -> list[str]:
    """In a schema of its own: `FIRST` rows written and analyzed, the statement's first call
    on a connection with this setting (its plan made and kept), `GROWN` more rows written
    (no ANALYZE: autovacuum comes later), and the plans `auto_explain` logs for a batch of
    two of those leads and three new ones."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, schema, folder)
        await conn.execute(f"SET search_path = {schema}")
        await conn.execute(rows, FIRST)
        await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()
    pool = await create_pool(dsn, schema, min_size=1, max_size=1, random_page_cost=random_page_cost)
    plans: list[str] = []

    def heard(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        plans.append(message.message)

    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                await statement(conn, [uuid4(), uuid4()])  # planned now, on FIRST rows
            await conn.execute(rows, GROWN)
            keys = [r[0] for r in await conn.fetch(f"SELECT lead_id FROM {table} LIMIT 2")]  # noqa: S608
            async with conn.transaction():
                await conn.execute("LOAD 'auto_explain'")
                await conn.execute(
                    "SET LOCAL auto_explain.log_min_duration = 0;"
                    " SET LOCAL client_min_messages = log"
                )
                conn.add_log_listener(heard)
                await statement(conn, [*keys, uuid4(), uuid4(), uuid4()])
                # auto_explain logs a statement when its portal closes, which may come with
                # the next message; the log then arrives after it.
                await conn.execute("SELECT 1")
                await asyncio.sleep(0.2)
                conn.remove_log_listener(heard)
    finally:
        await pool.close()
    return plans


async def _sends(conn: asyncpg.Connection, leads: list[UUID]) -> None:
    """Reporting's batch write with a touch's send for each lead: it gives the send's
    playbook and channel to the opens and clicks of that touch the timeline holds."""
    at = datetime.now(UTC)
    items = [
        Item(lead, at, f"touch:{touch}:sent", "touch_sent", {"touch_id": str(touch),
             "playbook": "welcome", "channel": "email"})
        for lead, touch in ((lead, uuid4()) for lead in leads)
    ]  # fmt: skip
    await reporting_store.write_batch(conn, Deltas(), {}, {}, items)


@pytest.mark.parametrize(
    ("schema", "folder", "rows", "statement", "table"),
    [
        (
            "reporting",
            REPORTING,
            "INSERT INTO lead_states (lead_id, state)"
            " SELECT gen_random_uuid(), '{}' FROM generate_series(1, $1)",
            reporting_store.lock_states,
            "lead_states",
        ),
        (
            "tracker",
            TRACKER,
            # The answers as the tracker writes them: JSON text inside a JSON string.
            "INSERT INTO lead_stages (lead_id, funnel_id, funnel_version, stage, entered_at,"
            " answers) SELECT gen_random_uuid(), 'f', 1, 's', now(), to_jsonb('{}'::text)"
            " FROM generate_series(1, $1)",
            tracker_store.load_states,
            "lead_stages",
        ),
        (
            "timeline",
            REPORTING,
            # Opens waiting for their send's playbook, a few per person.
            "INSERT INTO timeline_timeline (lead_id, at, key, kind, fields, touch_id)"
            " SELECT l, now() - make_interval(secs => n), 'touch:' || t || ':opened:' || n,"
            " 'touch_opened', jsonb_build_object('touch_id', t, 'playbook', null), t"
            " FROM (SELECT gen_random_uuid() AS l, gen_random_uuid() AS t"
            " FROM generate_series(1, $1 / 4)) AS people, generate_series(1, 4) AS n",
            _sends,
            "timeline_timeline",
        ),
    ],
    ids=["reporting lock_states", "tracker load_states", "reporting timeline sends"],
)
async def test_a_batchs_statement_probes_the_index_with_the_kits_settings(
    fresh_dsn: str, schema: str, folder: Path, rows: str, statement: Statement, table: str
) -> None:
    kit = await _plans(fresh_dsn, f"{schema}_kit", folder, rows, table, statement, RANDOM_PAGE_COST)
    default = await _plans(fresh_dsn, f"{schema}_default", folder, rows, table, statement, 4.0)
    assert kit
    assert default
    scan = f"Seq Scan on {table}"
    assert not any(scan in plan for plan in kit), kit
    assert any(scan in plan for plan in default), default  # the control reads the table
