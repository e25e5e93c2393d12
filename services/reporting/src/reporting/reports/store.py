"""The report queries, the conversion query among them: each reads pre-aggregated rows (per
quarter hour, or a rollup of them, and dimension value), never per-lead rows, so its cost
follows the period and the breakdown, not the number of leads."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import asyncpg

from reporting.domain.dimensions import ALL
from reporting.domain.slots import LEVELS, Cohort, cohort_ranges, reading_plan
from reporting.domain.windows import WINDOW_COLUMNS, window_column
from reporting.reports.models import GroupKey, Period

# The array columns of the two tables' queues (migration 0013), in their order; a queue row
# holds one funnel, first stage and dimension.
_QUEUED = {
    "entry_counts": ("hour", "value", "leads"),
    "pair_conversions": ("to_stage", "hour", "value", *WINDOW_COLUMNS),
}


def _with_queued(*tables: Literal["entry_counts", "pair_conversions"]) -> str:
    """The WITH clause of a statement that reads _slot_rows of `tables`: each table's
    deltas still queued for the fold (docs/decisions/0067) of the funnel ($1), first step
    ($2) and dimension ($3), unnested once per statement (the queue holds a fraction of a
    second of batches when the fold keeps up)."""
    ctes = []
    for table in tables:
        first = "stage" if table == "entry_counts" else "from_stage"
        names = ", ".join(_QUEUED[table])
        arrays = ", ".join(f"q.{c}" for c in _QUEUED[table])
        ctes.append(
            f"queued_{table} AS MATERIALIZED (SELECT u.* FROM {table}_queue q,"  # noqa: S608
            f" unnest({arrays}) AS u({names})"
            f" WHERE q.funnel_id = $1 AND q.{first} = $2 AND q.dim = $3)"
        )
    return "WITH " + ", ".join(ctes) + " "


def _slot_rows(
    table: Literal["entry_counts", "pair_conversions"], columns: str, *, queued: bool = True
) -> str:
    """The signed rows of each slot ($4..$8: cohort label, level, start, end, sign; see
    reporting.domain.slots), one index range scan per slot on the table of its level, and
    the slot's deltas still queued (quarter-hour rows the fold has not yet added to any
    level; the statement starts with _with_queued): in one statement, so one snapshot,
    every delta counts once. `table` is one of two literals and `columns` a constant of
    this module; `queued=False` is the statement before 0067, for the benchmark."""
    first = "stage" if table == "entry_counts" else "from_stage"
    levels = zip(range(len(LEVELS)), ("", "_hourly", "_6h", "_daily", "_weekly"), strict=True)
    scans = " UNION ALL ".join(
        f"SELECT {columns} FROM {table}{suffix} WHERE r.level = {level}"  # noqa: S608
        f" AND funnel_id = $1 AND {first} = $2 AND dim = $3 AND hour >= r.lo AND hour < r.hi"
        for level, suffix in levels
    )
    if queued:
        scans += (
            f" UNION ALL SELECT {columns} FROM queued_{table}"  # noqa: S608
            " WHERE hour >= r.lo AND hour < r.hi"
        )
    return (
        "unnest($4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[], $8::int[])"
        f" AS r(cohort, level, lo, hi, sign) CROSS JOIN LATERAL ({scans}) t"
    )


def _slot_args(period: Period, cohort: Cohort) -> tuple[list[Any], ...]:
    """$4..$8 of _slot_rows: the period's reading plan as five parallel arrays."""
    plan = reading_plan(period.start, period.end, period.time_zone, cohort)
    return (
        [label for label, _ in plan],
        [slot.level for _, slot in plan],
        [slot.start for _, slot in plan],
        [slot.end for _, slot in plan],
        [slot.sign for _, slot in plan],
    )


# time_to_convert's two statements (constant text: identifiers from this module only).
_TTC_ENTERED_SQL = (
    _with_queued("entry_counts")  # noqa: S608
    + "SELECT coalesce(sum(r.sign * t.leads), 0)::bigint FROM "
    + _slot_rows("entry_counts", "value, leads")
)
_TTC_REACHED_SQL = (
    _with_queued("pair_conversions")  # noqa: S608
    + "SELECT "
    + ", ".join(f"coalesce(sum(r.sign * t.{c}), 0)::bigint AS {c}" for c in WINDOW_COLUMNS)
    + " FROM "
    + _slot_rows("pair_conversions", "value, to_stage, " + ", ".join(WINDOW_COLUMNS))
    + " WHERE t.to_stage = $9"
)


async def funnels(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every funnel reporting has seen events for, with its stages in order."""
    rows = await conn.fetch(
        "SELECT funnel_id, stage, position FROM funnel_stages ORDER BY funnel_id, position"
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["funnel_id"], []).append(r["stage"])
    return out


async def stage_counts(conn: asyncpg.Connection, funnel_id: str) -> list[asyncpg.Record]:
    """Leads in each stage of a funnel now (stages without any left out), in funnel order."""
    return list(
        await conn.fetch(
            """SELECT c.stage, coalesce(s.position, 0) AS position, c.leads
               FROM stage_counts c
               LEFT JOIN funnel_stages s ON s.funnel_id = c.funnel_id AND s.stage = c.stage
               WHERE c.funnel_id = $1 AND c.leads > 0 ORDER BY position, c.stage""",
            funnel_id,
        )
    )


async def funnel_stages(conn: asyncpg.Connection, funnel_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT stage, position FROM funnel_stages WHERE funnel_id = $1 ORDER BY position, stage",
        funnel_id,
    )
    return {r["stage"]: r["position"] for r in rows}


def conversion_sql(dim: str, column: str, *, queued: bool = True) -> str:
    """conversion_counts' statement ($1 funnel, $2 first step, $3 dim, $4..$8 the slots, $9
    the later steps); `column` one of WINDOW_COLUMNS. `queued=False`: before 0067."""
    segment_sql = "NULL::text" if dim == ALL[0] else "t.value"
    with_queued = _with_queued("entry_counts", "pair_conversions") if queued else ""
    entries = _slot_rows("entry_counts", "value, leads", queued=queued)
    pairs = _slot_rows("pair_conversions", f"value, to_stage, {column} AS counted", queued=queued)
    return f"""{with_queued}SELECT NULL::text AS to_stage, r.cohort, {segment_sql} AS segment,
                   sum(r.sign * t.leads)::bigint AS n
            FROM {entries}
            GROUP BY 1, 2, 3
            UNION ALL
            SELECT t.to_stage, r.cohort, {segment_sql}, sum(r.sign * t.counted)::bigint
            FROM {pairs}
            WHERE t.to_stage = ANY($9::text[])
            GROUP BY 1, 2, 3"""  # noqa: S608


async def conversion_counts(
    conn: asyncpg.Connection,
    funnel_id: str,
    steps: list[str],
    period: Period,
    *,
    window_days: int,
    cohort: Cohort,
    dim: str,
) -> tuple[dict[GroupKey, int], dict[tuple[str | None, str | None, str], int]]:
    """Leads that first entered steps[0] in the period, and how many of them reached each
    later step within the window, per (cohort, segment): signed rows of the quarter-hour,
    hourly, 6-hour, daily and weekly tables (reporting.domain.slots) and the deltas still
    queued for them, never rows per lead, read from their keys' indexes alone (migration
    0011), both counts in one round trip."""
    rows = await conn.fetch(
        conversion_sql(dim, window_column(window_days)),
        funnel_id,
        steps[0],
        dim,
        *_slot_args(period, cohort),
        steps[1:],
    )
    return entered_and_reached(rows)


def entered_and_reached(
    rows: list[asyncpg.Record],
) -> tuple[dict[GroupKey, int], dict[tuple[str | None, str | None, str], int]]:
    """`conversion_sql`'s rows as the leads that entered per (cohort, segment) and those that
    reached each later stage per (cohort, segment, stage)."""
    entered = {
        (r["cohort"], r["segment"]): int(r["n"]) for r in rows if r["to_stage"] is None and r["n"]
    }
    reached = {
        (r["cohort"], r["segment"], r["to_stage"]): int(r["n"])
        for r in rows
        if r["to_stage"] is not None
    }
    return entered, reached


async def stage_stays(
    conn: asyncpg.Connection, funnel_id: str, period: Period
) -> dict[str, dict[int, int]]:
    rows = await conn.fetch(
        """SELECT stage, bucket_hours, sum(stays)::bigint AS n FROM stage_stays
           WHERE funnel_id = $1 AND hour >= $2 AND hour < $3 GROUP BY 1, 2""",
        funnel_id,
        period.utc_from,
        period.utc_to,
    )
    out: dict[str, dict[int, int]] = defaultdict(dict)
    for r in rows:
        if r["n"]:
            out[r["stage"]][r["bucket_hours"]] = int(r["n"])
    return out


async def time_to_convert(
    conn: asyncpg.Connection, funnel_id: str, from_stage: str, to_stage: str, period: Period
) -> dict[str, int]:
    """Leads that entered from_stage in the period (`entered`), and the cumulative counters
    per window of those that reached to_stage: signed slots, as conversion_counts."""
    slot_args = _slot_args(period, "none")
    entered = await conn.fetchval(_TTC_ENTERED_SQL, funnel_id, from_stage, ALL[0], *slot_args)
    row = await conn.fetchrow(_TTC_REACHED_SQL, funnel_id, from_stage, ALL[0], *slot_args, to_stage)
    return {"entered": int(entered), **{c: int(row[c]) for c in WINDOW_COLUMNS}}


async def interactions_before_purchase(
    conn: asyncpg.Connection, funnel_id: str, period: Period
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT interactions, sum(leads)::bigint AS buyers,
                      sum(interactions_sum)::bigint AS total
               FROM purchase_interactions
               WHERE funnel_id = $1 AND hour >= $2 AND hour < $3
               GROUP BY 1 HAVING sum(leads) > 0 ORDER BY 1""",
            funnel_id,
            period.utc_from,
            period.utc_to,
        )
    )


async def touch_effect(
    conn: asyncpg.Connection, funnel_id: str, period: Period, window_days: int
) -> list[asyncpg.Record]:
    column = window_column(window_days)
    return list(
        await conn.fetch(
            f"""SELECT stage, playbook, sum(leads)::bigint AS leads,
                       sum({column})::bigint AS converted
                FROM touch_effect WHERE funnel_id = $1 AND hour >= $2 AND hour < $3
                GROUP BY 1, 2 HAVING sum(leads) > 0 ORDER BY 1, 2""",  # noqa: S608
            funnel_id,
            period.utc_from,
            period.utc_to,
        )
    )


async def revenue(conn: asyncpg.Connection, funnel_id: str, dim: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT r.value, r.currency, r.revenue, r.orders, r.refunds, r.customers,
                  c.customers AS all_customers, c.repeat_customers
           FROM revenue r
           LEFT JOIN customer_counts c USING (funnel_id, dim, value)
           WHERE r.funnel_id = $1 AND r.dim = $2 AND (r.orders > 0 OR r.refunds > 0)
           ORDER BY r.currency, r.revenue DESC, r.value""",
        funnel_id,
        dim,
    )
    return [dict(r) for r in rows]


def _bucket_args(period: Period, interval: Cohort) -> tuple[list[Any], ...]:
    """The period's day/week/month buckets in its zone as three parallel arrays."""
    ranges = cohort_ranges(period.start, period.end, period.time_zone, interval)
    return [r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges]


async def revenue_series(
    conn: asyncpg.Connection, funnel_id: str, period: Period, interval: Cohort
) -> list[asyncpg.Record]:
    """Per bucket of the period and currency: net revenue, orders, refunds, new and repeat
    customers (rows per quarter hour and currency, never per lead)."""
    return list(
        await conn.fetch(
            """SELECT r.label AS period, t.currency, sum(t.revenue) AS revenue,
                      sum(t.orders)::bigint AS orders, sum(t.refunds)::bigint AS refunds,
                      sum(t.new_customers)::bigint AS new_customers,
                      sum(t.repeat_customers)::bigint AS repeat_customers
               FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) AS r(label, lo, hi)
               JOIN revenue_by_time t
                 ON t.funnel_id = $1 AND t.hour >= r.lo AND t.hour < r.hi
               GROUP BY 1, 2
               HAVING sum(t.orders) > 0 OR sum(t.refunds) > 0
               ORDER BY 1, 2""",
            funnel_id,
            *_bucket_args(period, interval),
        )
    )


# Subscription changes that count (rows whose changes all summed to nothing, a subscriber
# erased or merged into another lead, make no currency appear).
_CHANGED = """(t.mrr <> 0 OR t.subscribers <> 0 OR t.new_subscribers <> 0
                 OR t.cancellations <> 0)"""

# The history before the period is summed once, each bucket's own changes once, and the
# state at each bucket's end is a running sum over the buckets (they are contiguous): one
# read of the funnel's changes, not one per bucket. A currency appears from the first bucket
# whose end follows one of its changes.
_SUBSCRIPTION_SERIES = f"""
    WITH r AS (
        SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[])
            WITH ORDINALITY AS r (label, lo, hi, n)),
    before AS (
        SELECT t.currency, sum(t.mrr) AS mrr, sum(t.subscribers) AS subscribers
        FROM subscription_changes t
        WHERE t.funnel_id = $1 AND t.hour < $3[1] AND {_CHANGED}
        GROUP BY t.currency),
    inside AS (
        SELECT r.n, t.currency, sum(t.mrr) AS mrr, sum(t.subscribers) AS subscribers,
               sum(t.new_subscribers) AS new_subscribers,
               sum(t.cancellations) AS cancellations
        FROM r JOIN subscription_changes t
          ON t.funnel_id = $1 AND t.hour >= r.lo AND t.hour < r.hi AND {_CHANGED}
        GROUP BY r.n, t.currency),
    since AS (
        SELECT currency, min(n) AS n FROM (
            SELECT currency, 0::bigint AS n FROM before
            UNION ALL SELECT currency, n FROM inside) AS seen
        GROUP BY currency),
    running AS (
        SELECT r.label, s.currency,
               coalesce(b.mrr, 0) + sum(coalesce(i.mrr, 0)) OVER w AS mrr,
               coalesce(b.subscribers, 0) + sum(coalesce(i.subscribers, 0)) OVER w
                   AS subscribers,
               coalesce(i.subscribers, 0) AS changed,
               coalesce(i.new_subscribers, 0) AS new_subscribers,
               coalesce(i.cancellations, 0) AS cancellations
        FROM since s JOIN r ON r.n >= s.n
        LEFT JOIN before b ON b.currency = s.currency
        LEFT JOIN inside i ON i.n = r.n AND i.currency = s.currency
        WINDOW w AS (PARTITION BY s.currency ORDER BY r.n))
    SELECT label AS period, currency, (subscribers - changed)::bigint AS subscribers_at_start,
           mrr, subscribers::bigint AS subscribers, new_subscribers::bigint AS new_subscribers,
           cancellations::bigint AS cancellations
    FROM running
    ORDER BY 1, 2"""  # noqa: S608 (fixed text)


async def subscription_series(
    conn: asyncpg.Connection, funnel_id: str, period: Period, interval: Cohort
) -> list[asyncpg.Record]:
    """Per bucket and currency: subscribers at its start, MRR and subscribers at its end,
    new subscriptions and cancellations in it (sums of the changes before each instant).
    Rows whose changes all summed to nothing (a subscriber erased, or merged into another
    lead) make no currency appear."""
    return list(await conn.fetch(_SUBSCRIPTION_SERIES, funnel_id, *_bucket_args(period, interval)))
