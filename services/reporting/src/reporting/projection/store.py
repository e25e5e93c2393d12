"""The projection tables: a lead's state in and out, aggregate deltas applied in one
statement per table and its rollups (rows locked in key order, as every writer locks)."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from funnel_servicekit.live import NOTIFY_CHANGED_SQL
from reporting.domain.slots import _ORIGIN as ORIGIN
from reporting.domain.slots import DAY, HOUR, SIX_HOURS, WEEK
from reporting.domain.windows import WINDOW_COLUMNS
from reporting.projection.models.contributions import Deltas
from reporting.projection.models.lead_state import LeadState
from reporting.timeline.models import Item


@dataclass(frozen=True)
class TableSpec:
    keys: tuple[tuple[str, str], ...]  # (column, PostgreSQL type)
    values: tuple[tuple[str, str], ...]

    @property
    def names(self) -> str:
        return ", ".join(c for c, _ in self.keys + self.values)

    @property
    def fanned(self) -> bool:
        """Whether a row is counted under each (dimension, value) of a lead: the batch's rows
        come without the two columns, each with its group of pairs (`Deltas`)."""
        return any(c == "dim" for c, _ in self.keys)

    @property
    def row_columns(self) -> tuple[tuple[str, str], ...]:
        """The columns the batch's rows are sent with (a fanned row without dim and value)."""
        return tuple((c, t) for c, t in self.keys + self.values if c not in ("dim", "value"))

    def _rows_sql(self, first: int = 1) -> str:
        """The batch's rows (`names`, one array per column, the parameters from `$first` on),
        each key once: a fanned table's rows (parameters: the group of each row, its columns,
        then each group's pairs) joined to their group's (dimension, value) pairs and summed
        by key, zero sums left out."""
        if not self.fanned:
            arrays = ", ".join(
                f"${first + i}::{t}[]" for i, (_, t) in enumerate(self.keys + self.values)
            )
            return f"SELECT * FROM unnest({arrays})"  # noqa: S608
        columns = self.row_columns
        rows = ", ".join(f"${first + i + 1}::{t}[]" for i, (_, t) in enumerate(columns))
        n = first + len(columns) + 1
        keys = ", ".join(c for c, _ in self.keys)
        sums, nonzero = self._sums()
        return (
            f"SELECT {keys}, {sums}"  # noqa: S608
            f" FROM unnest(${first}::int[], {rows}) AS r(grp, {', '.join(c for c, _ in columns)})"
            f" JOIN unnest(${n}::int[], ${n + 1}::text[], ${n + 2}::text[]) AS g(grp, dim, value)"
            f" USING (grp) GROUP BY {keys} HAVING {nonzero}"
        )

    @property
    def parameters(self) -> int:
        """How many parameters (arrays) the batch's rows are sent in."""
        if not self.fanned:
            return len(self.keys) + len(self.values)
        return len(self.row_columns) + 4

    def _sums(self) -> tuple[str, str]:
        """The value columns summed (cast back to their types), and "some sum is not zero"."""
        sums = ", ".join(f"sum({c})::{t}" for c, t in self.values)
        nonzero = " OR ".join(f"sum({c}) <> 0" for c, _ in self.values)
        return sums, nonzero

    def _insert_grouped(self, target: str, size: timedelta | None, source: str = "d") -> str:
        """`source`'s rows summed by key (`hour` floored to `size`, as reporting.domain.slots
        floors it, when given) added to `target`, zero sums left out, in key order."""
        keys = ", ".join(c for c, _ in self.keys)
        adds = ", ".join(f"{c} = t.{c} + excluded.{c}" for c, _ in self.values)
        bucket = "hour"
        if size is not None:
            bucket = f"date_bin('{int(size.total_seconds())} seconds', hour, '{ORIGIN}')"
        grouped = ", ".join(bucket if c == "hour" else c for c, _ in self.keys)
        sums, nonzero = self._sums()
        return (
            f"INSERT INTO {target} AS t ({self.names})"  # noqa: S608
            f" SELECT {grouped}, {sums} FROM {source} GROUP BY {grouped}"
            f" HAVING {nonzero} ORDER BY {grouped}"
            f" ON CONFLICT ({keys}) DO UPDATE SET {adds}"
        )

    def upsert_ctes(
        self,
        table: str,
        rollups: tuple[tuple[str, timedelta], ...] = (),
        *,
        first: int = 1,
        prefix: str = "d",
    ) -> list[str]:
        """The batch's rows (parameters from `$first` on) added to `table`, and the same rows
        summed by each rollup's bucket added to that rollup, as the CTEs of one statement
        (named from `prefix`); each in key order, so concurrent writers lock rows in the same
        order. Identifiers come from TABLES and ROLLUPS only."""
        names = self.names
        keys = ", ".join(c for c, _ in self.keys)
        adds = ", ".join(f"{c} = t.{c} + excluded.{c}" for c, _ in self.values)
        upserts = [
            f"INSERT INTO {table} AS t ({names}) SELECT {names} FROM {prefix}"  # noqa: S608
            f" ORDER BY {keys} ON CONFLICT ({keys}) DO UPDATE SET {adds}"
        ]
        upserts += [self._insert_grouped(rollup, size, prefix) for rollup, size in rollups]
        return [f"{prefix} ({names}) AS ({self._rows_sql(first)})"] + [
            f"{prefix}_{i} AS ({upsert})" for i, upsert in enumerate(upserts)
        ]

    def upsert_sql(self, table: str, rollups: tuple[tuple[str, timedelta], ...] = ()) -> str:
        """`upsert_ctes` as a statement of its own (parameters from $1)."""
        return f"WITH {', '.join(self.upsert_ctes(table, rollups))} SELECT"

    def queue_ctes(
        self, table: str, by: tuple[str, ...], *, first: int = 1, prefix: str = "d"
    ) -> list[str]:
        """The batch's rows (parameters from `$first` on) into the table's queue, as CTEs
        named from `prefix`: a row per value of the `by` columns (what a report asks for),
        the other columns as arrays."""
        rest = [c for c, _ in self.keys + self.values if c not in by]
        grouped = ", ".join(by)
        aggregated = ", ".join(f"array_agg({c})" for c in rest)
        return [
            f"{prefix} ({self.names}) AS ({self._rows_sql(first)})",
            f"{prefix}_q AS (INSERT INTO {table}_queue ({grouped}, {', '.join(rest)})"  # noqa: S608
            f" SELECT {grouped}, {aggregated} FROM {prefix} GROUP BY {grouped}"
            f" ORDER BY {grouped})",
        ]

    def queue_sql(self, table: str, by: tuple[str, ...]) -> str:
        """`queue_ctes` as a statement of its own (parameters from $1)."""
        return f"WITH {', '.join(self.queue_ctes(table, by))} SELECT"

    def fold_sql(
        self, table: str, by: tuple[str, ...], rollups: tuple[tuple[str, timedelta], ...]
    ) -> str:
        """One statement: the oldest $1 rows of the table's queue taken out, their deltas
        summed by key into `table` and by each rollup's bucket into that rollup; returns how
        many queue rows it took. A report reads the queue and the tables in one snapshot, so
        it sees every delta exactly once, before the fold or after it."""
        names = self.names
        rest = [c for c, _ in self.keys + self.values if c not in by]
        columns = ", ".join(f"q.{c}" if c in by else f"u.{c}" for c, _ in self.keys + self.values)
        upserts = [self._insert_grouped(table, None)]
        upserts += [self._insert_grouped(rollup, size) for rollup, size in rollups]
        steps = "".join(f", w{i} AS ({upsert})" for i, upsert in enumerate(upserts))
        return (
            f"WITH q AS (DELETE FROM {table}_queue WHERE id IN"  # noqa: S608
            f" (SELECT id FROM {table}_queue ORDER BY id LIMIT $1) RETURNING *),"
            f" d ({names}) AS (SELECT {columns} FROM q,"
            f" unnest({', '.join(f'q.{c}' for c in rest)}) AS u({', '.join(rest)}))"
            f"{steps} SELECT count(*) FROM q"
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
    "revenue_by_time": TableSpec(
        (("funnel_id", "text"), ("hour", "timestamptz"), ("currency", "text")),
        (
            ("revenue", "numeric"),
            ("orders", "bigint"),
            ("refunds", "bigint"),
            ("new_customers", "bigint"),
            ("repeat_customers", "bigint"),
        ),
    ),
    "subscription_changes": TableSpec(
        (("funnel_id", "text"), ("hour", "timestamptz"), ("currency", "text")),
        (
            ("mrr", "numeric"),
            ("subscribers", "bigint"),
            ("new_subscribers", "bigint"),
            ("cancellations", "bigint"),
        ),
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
# Tables that also keep rollups by hour, 6 hours, UTC day and week (reporting.domain.slots
# reads them). The projection appends their deltas to the table's queue (`<table>_queue`, a
# row of arrays per batch and (funnel, first stage, dimension)); the fold moves queued deltas
# into the quarter-hour table and every rollup in one transaction, so every rollup row is
# always the sum of its quarter hours, and a report adds the queued deltas of its slots
# (docs/decisions/0067).
ROLLUPS: dict[str, tuple[tuple[str, timedelta], ...]] = {
    "entry_counts": (
        ("entry_counts_hourly", HOUR),
        ("entry_counts_6h", SIX_HOURS),
        ("entry_counts_daily", DAY),
        ("entry_counts_weekly", WEEK),
    ),
    "pair_conversions": (
        ("pair_conversions_hourly", HOUR),
        ("pair_conversions_6h", SIX_HOURS),
        ("pair_conversions_daily", DAY),
        ("pair_conversions_weekly", WEEK),
    ),
}
# The columns a queue row is one value of (what a conversion question selects by).
QUEUED_BY: dict[str, tuple[str, ...]] = {
    "entry_counts": ("funnel_id", "stage", "dim"),
    "pair_conversions": ("funnel_id", "from_stage", "dim"),
}
# Tables whose deltas go straight into their quarter-hour rows and every rollup in the
# projection's transaction instead of their queue: the projection before 0067 (empty in the
# service; the fold's tests and the projection's bench compare against it).
INLINE: set[str] = set()


def _delta_ctes(table: str, first: int) -> list[str]:
    """The CTEs adding a batch's deltas to `table` (queued, or upserted with its rollups)."""
    spec, prefix = TABLES[table], f"d_{table}"
    if table in ROLLUPS and table not in INLINE:
        return spec.queue_ctes(table, QUEUED_BY[table], first=first, prefix=prefix)
    rollups = ROLLUPS.get(table, ()) if table in INLINE else ()
    return spec.upsert_ctes(table, rollups, first=first, prefix=prefix)


_FOLD_SQL = {
    table: TABLES[table].fold_sql(table, QUEUED_BY[table], rollups)
    for table, rollups in ROLLUPS.items()
}


async def lock_states(
    conn: asyncpg.Connection, lead_ids: list[UUID]
) -> dict[UUID, tuple[LeadState, bool]]:
    """The leads' states, their rows locked for this transaction (so the events of one lead
    serialize across consumers), and whether each lead was erased: one statement. Rows that
    exist are locked as they are (`FOR UPDATE`, in id order: no new row version); a lead
    without one gets an empty row (in id order), or, when another consumer made it since
    this statement's snapshot, that row locked as it now is. Two consumers that see one
    lead's row differently may lock in different orders: PostgreSQL then aborts one with a
    deadlock, a transient error (the kit retries the poll, its inbox rows rolled back)."""
    rows = await conn.fetch(
        """WITH found AS (
               SELECT s.lead_id, s.state::text AS state FROM lead_states s
               WHERE s.lead_id = ANY($1::uuid[]) ORDER BY s.lead_id FOR UPDATE),
           made AS (
               INSERT INTO lead_states AS s (lead_id, state)
               SELECT id, '{}' FROM unnest($1::uuid[]) AS u(id)
               WHERE NOT EXISTS (SELECT 1 FROM lead_states x WHERE x.lead_id = u.id)
               ORDER BY id
               ON CONFLICT (lead_id) DO UPDATE SET lead_id = s.lead_id
               RETURNING s.lead_id, s.state::text AS state)
           SELECT l.lead_id, l.state,
                  EXISTS (SELECT 1 FROM erased_leads e WHERE e.lead_id = l.lead_id) AS erased
           FROM (SELECT * FROM found UNION ALL SELECT * FROM made) AS l""",
        sorted(lead_ids),
    )
    # The state's JSON text validated in one pass (no Python dicts in between).
    states = {r[0]: (LeadState.model_validate_json(r[1]), r[2]) for r in rows}
    gone = set(lead_ids) - set(states)
    if gone:  # rows deleted (an erasure) while this waited for them: made anew
        states.update(await lock_states(conn, sorted(gone)))
    return states


async def erase_many(conn: asyncpg.Connection, erased: dict[UUID, datetime]) -> None:
    """Delete every detail row of these people; keep only that their ids were erased."""
    if not erased:
        return
    await conn.execute("DELETE FROM lead_states WHERE lead_id = ANY($1::uuid[])", list(erased))
    await conn.execute(
        "DELETE FROM timeline_timeline WHERE lead_id = ANY($1::uuid[])", sorted(erased)
    )
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


_STAGES_CTE = """fs AS (INSERT INTO funnel_stages (funnel_id, stage, position)
    SELECT * FROM unnest(${0}::text[], ${1}::text[], ${2}::int[])
    ON CONFLICT (funnel_id, stage) DO UPDATE SET position = excluded.position
    WHERE funnel_stages.position IS DISTINCT FROM excluded.position)"""
_STATES_CTE = """ls AS (INSERT INTO lead_states (lead_id, state)
    SELECT id, state::jsonb FROM unnest(${0}::uuid[], ${1}::text[]) AS u(id, state)
    ON CONFLICT (lead_id) DO UPDATE SET state = excluded.state, updated_at = now())"""
# An open or a click without its playbook takes it and the channel from its touch's send
# when the table holds the send; a send in the batch gives them to the opens and clicks the
# table holds (`_SENDS_CTE`), and to those of the batch before they are sent here
# (`timeline.models.with_sends_told`): whichever arrived first, both end up told.
_TIMELINE_CTE = """tl AS (INSERT INTO timeline_timeline (lead_id, at, key, kind, fields, touch_id)
    SELECT l, a, k, kind, CASE WHEN t IS NULL OR f::jsonb ->> 'playbook' IS NOT NULL
        THEN f::jsonb ELSE f::jsonb || coalesce((
            SELECT jsonb_build_object(
                'playbook', s.fields -> 'playbook', 'channel', s.fields -> 'channel')
            FROM timeline_timeline s
            WHERE s.lead_id = u.l AND s.key = 'touch:' || u.t::text || ':sent'), '{{}}')
        END, t
    FROM unnest(${0}::uuid[], ${1}::timestamptz[], ${2}::text[], ${3}::text[], ${4}::text[],
                ${5}::uuid[]) AS u(l, a, k, kind, f, t)
    ON CONFLICT DO NOTHING)"""
_SENDS_CTE = """ts AS (UPDATE timeline_timeline o
    SET fields = o.fields || jsonb_build_object(
        'playbook', s.f::jsonb -> 'playbook', 'channel', s.f::jsonb -> 'channel')
    FROM unnest(${0}::uuid[], ${1}::uuid[], ${2}::text[]) AS s(l, t, f)
    WHERE o.lead_id = s.l AND o.touch_id = s.t AND o.fields ->> 'playbook' IS NULL)"""


@functools.lru_cache(maxsize=256)
def write_sql(
    tables: tuple[str, ...],
    stages: bool,
    states: bool,
    items: bool,
    sends: bool,
    inline: frozenset[str],
) -> str:
    """One statement for a batch's writes: the deltas of `tables` (in this order), the stage
    positions, the leads' states and the timeline items, each a data-modifying CTE (they
    touch different rows and none reads another's). `inline` is INLINE (part of the key)."""
    ctes: list[str] = []
    first = 1
    for table in tables:
        ctes += _delta_ctes(table, first)
        first += TABLES[table].parameters
    for wanted, cte, n in (
        (stages, _STAGES_CTE, 3),
        (states, _STATES_CTE, 2),
        (items, _TIMELINE_CTE, 6),
        (sends, _SENDS_CTE, 3),
    ):
        if wanted:
            ctes.append(cte.format(*range(first, first + n)))
            first += n
    if "stage_counts" in tables or stages:
        # The snapshot changed: at commit, its live streams look again (every replica's,
        # LISTEN on the schema's channel, `reporting.reports.live`).
        return f"WITH {', '.join(ctes)} SELECT {NOTIFY_CHANGED_SQL}"
    return f"WITH {', '.join(ctes)} SELECT"


async def write_batch(
    conn: asyncpg.Connection,
    deltas: Deltas,
    positions: dict[tuple[str, str], int],
    states: dict[UUID, LeadState],
    items: list[Item],
) -> None:
    """A batch's writes in one statement (one round trip, one parse of its parameters): each
    delta added to its row (rows locked in key order; the deltas of a table with rollups go
    to its queue, for the fold; the rows counted under each (dimension, value) of a lead go
    with their group's pairs, PostgreSQL fans them out and sums them by key), the stage
    positions the events told (a row written only when its position changed), the leads' new
    states, and the timeline items (one already there is kept as it is: its key and time
    come from its event, so a redelivery or a replay writes the same row), opens and clicks
    told their send's playbook and channel whichever came first (see `_TIMELINE_CTE`)."""
    args: list[Any] = []
    tables = _delta_columns(deltas, args) if deltas else ()
    if positions:
        keys = sorted(positions)
        args += [[f for f, _ in keys], [s for _, s in keys], [positions[k] for k in keys]]
    if states:
        ids = sorted(states)
        args += [ids, [states[i].model_dump_json() for i in ids]]
    if items:
        ordered = sorted(items, key=lambda i: (i.lead_id, i.at, i.key))
        args += [
            [i.lead_id for i in ordered],
            [i.at for i in ordered],
            [i.key for i in ordered],
            [i.kind for i in ordered],
            [json.dumps(i.fields, separators=(",", ":")) for i in ordered],
            [i.touch_id for i in ordered],
        ]
    sends = [i for i in items if i.kind == "touch_sent"]
    if sends:
        args += [
            [i.lead_id for i in sends],
            [UUID(i.fields["touch_id"]) for i in sends],
            [json.dumps(i.fields, separators=(",", ":")) for i in sends],
        ]
    if not args:
        return
    sql = write_sql(
        tables, bool(positions), bool(states), bool(items), bool(sends), frozenset(INLINE)
    )
    await conn.execute(sql, *args)


def _delta_columns(deltas: Deltas, args: list[Any]) -> tuple[str, ...]:
    """The deltas' parameters appended to `args` table by table (in name order); the tables.
    A batch sends every table of each group it changes (`_SHAPES`, empty arrays for a table
    without deltas), so the statement has a few texts, each prepared once per connection,
    rather than one per combination of tables."""
    rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for (table, key), values in deltas.rows.items():
        rows[table].append((*key, *values))
    used: dict[str, set[int]] = defaultdict(set)
    for group, fanned in enumerate(deltas.groups.values()):
        for (table, head, tail), values in fanned.items():
            rows[table].append((group, *head, *tail, *values))
            used[table].add(group)
    pairs = list(deltas.groups)
    tables = tuple(sorted({t for shape in _SHAPES if shape & rows.keys() for t in shape}))
    for table in tables:
        spec = TABLES[table]
        if table not in rows:
            args += [[] for _ in range(spec.parameters)]
            continue
        args += [list(col) for col in zip(*rows[table], strict=True)]
        if spec.fanned:
            groups = sorted(used[table])
            args.append([g for g in groups for _ in pairs[g]])
            args.append([dim for g in groups for dim, _ in pairs[g]])
            args.append([value for g in groups for _, value in pairs[g]])
    return tables


# The tables a batch's statement always names together: a stage move's, and an order's.
_REVENUE = {"customer_counts", "purchase_interactions", "revenue", "revenue_by_time"}
_SHAPES = (
    frozenset(_REVENUE | {"subscription_changes"}),
    frozenset(TABLES.keys() - _REVENUE - {"subscription_changes"}),
)


async def fold_queued(conn: asyncpg.Connection, limit: int) -> int:
    """Up to `limit` queued rows of each rolled-up table folded into its quarter-hour table
    and rollups (one folder at a time per schema: an advisory lock for the transaction);
    returns the most queue rows one table gave."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('reporting fold ' || current_schema()))"
    )
    folded = 0
    for table in sorted(_FOLD_SQL):
        folded = max(folded, int(await conn.fetchval(_FOLD_SQL[table], limit)))
    return folded


# The rebuild's statements: a schema name goes into SQL text (identifiers cannot be bound),
# so callers pass only names they checked to be plain.


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def swap_schemas(conn: asyncpg.Connection, live: str, rebuilt: str, retired: str) -> None:
    """The live schema renamed to `retired` and the rebuilt one to `live`, in one transaction."""
    async with conn.transaction():
        await conn.execute(f'ALTER SCHEMA "{live}" RENAME TO "{retired}"')
        await conn.execute(f'ALTER SCHEMA "{rebuilt}" RENAME TO "{live}"')


async def projected_counts(conn: asyncpg.Connection) -> tuple[int, int]:
    """How many events the inbox holds and how many leads have a state."""
    events = int(await conn.fetchval("SELECT count(*) FROM inbox"))
    leads = int(await conn.fetchval("SELECT count(*) FROM lead_states"))
    return events, leads
