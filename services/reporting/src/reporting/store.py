"""The projection tables: a lead's state in and out, aggregate deltas applied in one
statement per table (rows sorted by key, so concurrent writers lock in the same order)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from reporting.domain.contributions import Contributions
from reporting.domain.lead_state import LeadState
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
# Tables that also keep a daily (UTC) rollup, written from the same deltas.
DAILY = {"entry_counts": "entry_counts_daily", "pair_conversions": "pair_conversions_daily"}
_SQL = {table: spec.upsert_sql(table) for table, spec in TABLES.items()}
_SQL |= {daily: TABLES[table].upsert_sql(daily) for table, daily in DAILY.items()}


def _base(table: str) -> str:
    return next((base for base, daily in DAILY.items() if daily == table), table)


def _rolled_up(table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The same deltas keyed by UTC day instead of hour, summed per key."""
    spec = TABLES[table]
    hour_at = [c for c, _ in spec.keys].index("hour")
    width = len(spec.keys)
    summed: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = list(row[:width])
        key[hour_at] = key[hour_at].replace(hour=0)
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
    for table, daily in DAILY.items():
        if table in rows:
            rows[daily] = _rolled_up(table, rows[table])
    for table in sorted(rows):
        spec = TABLES[_base(table)]
        ordered = sorted(rows[table], key=lambda r: tuple(str(v) for v in r[: len(spec.keys)]))
        columns = [list(col) for col in zip(*ordered, strict=True)]
        await conn.execute(_SQL[table], *columns)
