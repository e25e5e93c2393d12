"""The report queries: each reads pre-aggregated rows (per hour and dimension value), never
per-lead rows, so its cost follows the period and the breakdown, not the number of leads."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import asyncpg

from reporting.domain.answers import GroupKey
from reporting.domain.dimensions import ALL, Attribution, Breakdown, dim_name
from reporting.domain.period import Period
from reporting.domain.windows import window_column

Cohort = Literal["none", "day", "week", "month"]
# SQL fragments chosen from fixed strings only; every value travels as a parameter.
_COHORT_SQL = {
    "none": "NULL::text",
    "day": "to_char(date_trunc('day', hour AT TIME ZONE $4), 'YYYY-MM-DD')",
    "week": "to_char(date_trunc('week', hour AT TIME ZONE $4), 'YYYY-MM-DD')",
    "month": "to_char(date_trunc('month', hour AT TIME ZONE $4), 'YYYY-MM')",
}


def _hours_and_days(table: Literal["entry_counts", "pair_conversions"], cohort: Cohort) -> str:
    """The rows of a period ($5..$6): without cohorts, its whole UTC days ($7..$8) from the
    daily rollup and the partial days around them from the hourly rows; with cohorts (whose
    edges are the caller's midnights) the hourly rows alone. `table` is one of two literals."""
    if cohort != "none":
        return (
            f"(SELECT * FROM {table} WHERE hour >= $5 AND hour < $6"  # noqa: S608
            " AND $7::timestamptz IS NOT NULL AND $8::timestamptz IS NOT NULL)"
        )
    return (
        f"(SELECT * FROM {table}_daily WHERE hour >= $7 AND hour < $8"  # noqa: S608
        f" UNION ALL SELECT * FROM {table}"
        " WHERE (hour >= $5 AND hour < $7) OR (hour >= $8 AND hour < $6))"
    )


def dimension(breakdown: Breakdown | None, attribution: Attribution) -> str:
    return ALL[0] if breakdown is None else dim_name(breakdown, attribution)


async def funnel_stages(conn: asyncpg.Connection, funnel_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT stage, position FROM funnel_stages WHERE funnel_id = $1 ORDER BY position, stage",
        funnel_id,
    )
    return {r["stage"]: r["position"] for r in rows}


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
    later step within the window, per (cohort, segment)."""
    cohort_sql = _COHORT_SQL[cohort]
    segment_sql = "NULL::text" if dim == ALL[0] else "value"
    entry_source = _hours_and_days("entry_counts", cohort)
    pair_source = _hours_and_days("pair_conversions", cohort)
    day_from, day_to = period.whole_utc_days()
    bounds = (period.time_zone, period.utc_from, period.utc_to, day_from, day_to)
    entered_rows = await conn.fetch(
        f"""SELECT {cohort_sql} AS cohort, {segment_sql} AS segment, sum(leads)::bigint AS n
            FROM {entry_source} t
            WHERE funnel_id = $1 AND stage = $2 AND dim = $3 AND $4::text IS NOT NULL
            GROUP BY 1, 2""",  # noqa: S608
        funnel_id,
        steps[0],
        dim,
        *bounds,
    )
    column = window_column(window_days)
    reached_rows = await conn.fetch(
        f"""SELECT {cohort_sql} AS cohort, {segment_sql} AS segment, to_stage,
                   sum({column})::bigint AS n
            FROM {pair_source} t
            WHERE funnel_id = $1 AND from_stage = $2 AND dim = $3
              AND to_stage = ANY($9::text[]) AND $4::text IS NOT NULL
            GROUP BY 1, 2, 3""",  # noqa: S608
        funnel_id,
        steps[0],
        dim,
        *bounds,
        steps[1:],
    )
    entered = {(r["cohort"], r["segment"]): int(r["n"]) for r in entered_rows if r["n"]}
    reached = {(r["cohort"], r["segment"], r["to_stage"]): int(r["n"]) for r in reached_rows}
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
) -> asyncpg.Record | None:
    """Cumulative counters per window of leads that entered from_stage in the period."""
    return await conn.fetchrow(
        """SELECT coalesce(sum(e.leads), 0)::bigint AS entered, t.*
           FROM (SELECT sum(c1d)::bigint AS c1d, sum(c3d)::bigint AS c3d,
                        sum(c7d)::bigint AS c7d, sum(c14d)::bigint AS c14d,
                        sum(c30d)::bigint AS c30d, sum(c60d)::bigint AS c60d,
                        sum(c90d)::bigint AS c90d, sum(c_any)::bigint AS c_any
                 FROM pair_conversions
                 WHERE funnel_id = $1 AND from_stage = $2 AND to_stage = $3 AND dim = 'all'
                   AND hour >= $4 AND hour < $5) t
           LEFT JOIN entry_counts e ON e.funnel_id = $1 AND e.stage = $2 AND e.dim = 'all'
                AND e.hour >= $4 AND e.hour < $5
           GROUP BY t.c1d, t.c3d, t.c7d, t.c14d, t.c30d, t.c60d, t.c90d, t.c_any""",
        funnel_id,
        from_stage,
        to_stage,
        period.utc_from,
        period.utc_to,
    )


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
