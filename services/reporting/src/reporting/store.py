"""The projection tables: a lead's state in and out, aggregate deltas applied in one
statement per table (rows sorted by key, so concurrent writers lock in the same order)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from reporting.domain.contributions import Contributions
from reporting.domain.lead_state import LeadState
from reporting.domain.slots import DAY, SIX_HOURS, WEEK, floor
from reporting.domain.windows import WINDOW_COLUMNS


@dataclass(frozen=True)
class TableSpec:
    keys: tuple[tuple[str, str], ...]  # (column, PostgreSQL type)
    values: tuple[tuple[str, str], ...]

    def upsert_sql(self, table: str) -> str:
        columns = [c for c, _ in self.keys + self.values]
        unnest = ", ".join(f"${i + 1}::{t}[]" for i, (_, t) in enumerate(self.keys + self.values))
        updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c, _ in self.values)
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({unnest})"  # noqa: S608
            f" ON CONFLICT ({', '.join(c for c, _ in self.keys)}) DO UPDATE SET {updates}"
        )


_WINDOWS = tuple((c, "bigint") for c in WINDOW_COLUMNS)
# The only tables and columns deltas go to; identifiers come from here, never from input.
TABLES: dict[str, TableSpec] = {
    "stage_counts": TableSpec((("funnel_id", "text"), ("stage", "text")), (("leads", "bigint"),)),
    "entry_counts": TableSpec(
        (
            ("funnel_id", "text"),
            ("stage", "text"),
            ("hour", "timestamptz"),
            ("dim", "text"),
            ("value", "text"),
        ),
        (("leads", "bigint"),),
    ),
    "pair_conversions": TableSpec(
        (
            ("funnel_id", "text"),
            ("from_stage", "text"),
            ("to_stage", "text"),
            ("hour", "timestamptz"),
            ("dim", "text"),
            ("value", "text"),
        ),
        _WINDOWS,
    ),
    "stage_stays": TableSpec(
        (
            ("funnel_id", "text"),
            ("stage", "text"),
            ("hour", "timestamptz"),
            ("bucket_hours", "integer"),
        ),
        (("stays", "bigint"),),
    ),
    "touch_effect": TableSpec(
        (("funnel_id", "text"), ("stage", "text"), ("playbook", "text"), ("hour", "timestamptz")),
        (("leads", "bigint"), *_WINDOWS),
    ),
    "purchase_interactions": TableSpec(
        (("funnel_id", "text"), ("hour", "timestamptz"), ("interactions", "integer")),
        (("leads", "bigint"), ("interactions_sum", "bigint")),
    ),
    "customer_counts": TableSpec(
        (("funnel_id", "text"), ("dim", "text"), ("value", "text")),
        (("customers", "bigint"), ("repeat_customers", "bigint")),
    ),
    "revenue": TableSpec(
        (("funnel_id", "text"), ("dim", "text"), ("value", "text"), ("currency", "text")),
        (
            ("revenue", "numeric"),
            ("orders", "bigint"),
            ("refunds", "bigint"),
            ("customers", "bigint"),
        ),
    ),
}
# Tables that also keep rollups by 6 hours, UTC day and week (reporting.domain.slots reads them),
# written from the same deltas in the same transaction, so every rollup row is always the
# sum of its hours.
ROLLUPS: dict[str, tuple[tuple[str, timedelta], ...]] = {
    "entry_counts": (
        ("entry_counts_6h", SIX_HOURS),
        ("entry_counts_daily", DAY),
        ("entry_counts_weekly", WEEK),
    ),
    "pair_conversions": (
        ("pair_conversions_6h", SIX_HOURS),
        ("pair_conversions_daily", DAY),
        ("pair_conversions_weekly", WEEK),
    ),
}
_BASE = {rollup: table for table, levels in ROLLUPS.items() for rollup, _ in levels}
_SQL = {table: spec.upsert_sql(table) for table, spec in TABLES.items()}
_SQL |= {rollup: TABLES[table].upsert_sql(rollup) for rollup, table in _BASE.items()}


def _rolled_up(table: str, rows: list[tuple[Any, ...]], size: timedelta) -> list[tuple[Any, ...]]:
    """The same deltas keyed by the 6 hours, UTC day or week of their hour, summed per key."""
    spec = TABLES[table]
    hour_at = [c for c, _ in spec.keys].index("hour")
    width = len(spec.keys)
    summed: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = list(row[:width])
        key[hour_at] = floor(key[hour_at], size)
        totals = summed.setdefault(tuple(key), [0] * (len(row) - width))
        for i, value in enumerate(row[width:]):
            totals[i] += value
    return [(*key, *values) for key, values in summed.items()]


async def lock_state(conn: asyncpg.Connection, lead_id: UUID) -> tuple[LeadState, bool]:
    """The lead's state, its row locked for this transaction (created empty when new, so
    the events of one lead serialize across consumers), and whether the lead was erased."""
    row = await conn.fetchrow(
        """INSERT INTO lead_states AS s (lead_id, state) VALUES ($1, '{}')
           ON CONFLICT (lead_id) DO UPDATE SET lead_id = s.lead_id
           RETURNING s.state,
                     EXISTS (SELECT 1 FROM erased_leads e WHERE e.lead_id = $1) AS erased""",
        lead_id,
    )
    return LeadState.model_validate(row["state"]), bool(row["erased"])


async def lock_states(
    conn: asyncpg.Connection, lead_ids: list[UUID]
) -> dict[UUID, tuple[LeadState, bool]]:
    """lock_state for many leads in one statement (locked in id order, as every writer)."""
    rows = await conn.fetch(
        """INSERT INTO lead_states AS s (lead_id, state)
           SELECT id, '{}' FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n) ORDER BY n
           ON CONFLICT (lead_id) DO UPDATE SET lead_id = s.lead_id
           RETURNING s.lead_id, s.state,
                     EXISTS (SELECT 1 FROM erased_leads e WHERE e.lead_id = s.lead_id) AS erased""",
        sorted(lead_ids),
    )
    return {r["lead_id"]: (LeadState.model_validate(r["state"]), bool(r["erased"])) for r in rows}


async def save_states(conn: asyncpg.Connection, states: dict[UUID, LeadState]) -> None:
    if not states:
        return
    await conn.execute(
        """INSERT INTO lead_states (lead_id, state)
           SELECT id, state::jsonb FROM unnest($1::uuid[], $2::text[]) AS u(id, state)
           ON CONFLICT (lead_id) DO UPDATE SET state = excluded.state, updated_at = now()""",
        list(states),
        [s.model_dump_json() for s in states.values()],
    )


async def erase_many(conn: asyncpg.Connection, erased: dict[UUID, datetime]) -> None:
    """erase for many people at once."""
    if not erased:
        return
    await conn.execute("DELETE FROM lead_states WHERE lead_id = ANY($1::uuid[])", list(erased))
    await conn.execute(
        """INSERT INTO erased_leads (lead_id, erased_at)
           SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) ON CONFLICT DO NOTHING""",
        list(erased),
        list(erased.values()),
    )


async def forget_states(conn: asyncpg.Connection, lead_ids: list[UUID]) -> None:
    """Drop the rows lock_states made for people erased before (a late event of theirs)."""
    if lead_ids:
        await conn.execute("DELETE FROM lead_states WHERE lead_id = ANY($1::uuid[])", lead_ids)


async def note_stages(conn: asyncpg.Connection, positions: dict[tuple[str, str], int]) -> None:
    if not positions:
        return
    keys = sorted(positions)
    await conn.execute(
        """INSERT INTO funnel_stages (funnel_id, stage, position)
           SELECT * FROM unnest($1::text[], $2::text[], $3::int[])
           ON CONFLICT (funnel_id, stage) DO UPDATE SET position = excluded.position""",
        [f for f, _ in keys],
        [s for _, s in keys],
        [positions[k] for k in keys],
    )


async def save_state(conn: asyncpg.Connection, lead_id: UUID, state: LeadState) -> None:
    await conn.execute(
        """INSERT INTO lead_states (lead_id, state) VALUES ($1, $2)
           ON CONFLICT (lead_id) DO UPDATE SET state = excluded.state, updated_at = now()""",
        lead_id,
        state.model_dump(mode="json"),
    )


async def erase(conn: asyncpg.Connection, lead_id: UUID, erased_at: datetime) -> None:
    """Delete every detail row of the person; keep only that the id was erased."""
    await conn.execute("DELETE FROM lead_states WHERE lead_id = $1", lead_id)
    await conn.execute(
        "INSERT INTO erased_leads (lead_id, erased_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        lead_id,
        erased_at,
    )


async def note_stage(conn: asyncpg.Connection, funnel_id: str, stage: str, position: int) -> None:
    await conn.execute(
        """INSERT INTO funnel_stages (funnel_id, stage, position) VALUES ($1, $2, $3)
           ON CONFLICT (funnel_id, stage) DO UPDATE SET position = excluded.position""",
        funnel_id,
        stage,
        position,
    )


async def apply_deltas(conn: asyncpg.Connection, deltas: Contributions) -> None:
    """Add each delta to its row, one statement per table."""
    rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for (table, key), values in deltas.items():
        rows[table].append((*key, *values))
    for table, levels in ROLLUPS.items():
        for rollup, size in levels if table in rows else ():
            rows[rollup] = _rolled_up(table, rows[table], size)
    for table in sorted(rows):
        spec = TABLES[_BASE.get(table, table)]
        ordered = sorted(rows[table], key=lambda r: tuple(str(v) for v in r[: len(spec.keys)]))
        columns = [list(col) for col in zip(*ordered, strict=True)]
        await conn.execute(_SQL[table], *columns)
