"""Reporting at scale: conversion-query latency on the pre-aggregated tables against the naive
query over the raw events, at 1M (and 10M) leads, and the projection's events per second.

`.venv/bin/python -m bench.reporting_queries --leads 1000000 [--leads 10000000]`

A fresh PostgreSQL (the devstack's) gets a raw stage-event table generated in SQL (sources,
campaigns, forms, drop-offs, delays with whole-day edges) and the reporting aggregates
computed from it in bulk. Each query is timed with the service's own code
(`reporting.reports.store.conversion_counts` + `conversion_groups`), and the naive SQL over the raw
table, indexed, answers the same question in the same run: **ratio = naive p95 / aggregate
p95**. The two answers are compared before timing (they must be equal). Projection throughput
runs the service's handler on generated events (`bench.reporting_dataset`), one transaction
per event with its inbox row, as the consumer does, on a PostgreSQL with fsync on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, log, migrated_postgres
from bench.reporting_dataset import generate
from funnel_contracts import Envelope
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool, server_settings
from reporting.app import MIGRATIONS
from reporting.domain.windows import WINDOW_COLUMNS
from reporting.projection import store
from reporting.projection.consumer import handle
from reporting.reports import store as queries
from reporting.reports.models import Period, conversion_groups, parse_period

STAGES = ["awareness", "interest", "desire", "action", "loyalty"]
TZ = "America/Los_Angeles"
INDIA = "Asia/Kolkata"  # +05:30: days begin on a quarter hour of UTC
# A 30-day period inside the generated 60 days of captures, in an hourly and a half-hour zone.
PERIOD = parse_period(date(2026, 9, 15), date(2026, 10, 14), TZ, datetime.now(UTC))
PERIOD_INDIA = parse_period(date(2026, 9, 15), date(2026, 10, 14), INDIA, datetime.now(UTC))

GENERATE_SQL = """
SELECT setseed(0.42);
DROP TABLE IF EXISTS bench_stage_events, bench_leads;
CREATE TABLE bench_leads AS
SELECT i AS lead_id,
       timestamptz '2026-09-01 00:00+00' + (floor(random() * 60 * 24 * 60) || ' minutes')::interval
           AS captured_at,
       s.source, s.medium,
       s.source || '-' || (1 + floor(random() * 6))::int AS campaign,
       (ARRAY['demo', 'ebook', 'webinar', 'trial'])[1 + floor(random() * 4)::int] AS form,
       '/lp/' || (1 + floor(random() * 12))::int AS landing_page,
       CASE WHEN random() < 0.15 THEN 'newsletter' ELSE s.source END AS last_source
FROM generate_series(1, $LEADS) i
CROSS JOIN LATERAL (SELECT (ARRAY['google', 'facebook', 'newsletter', 'partner', 'direct',
                                  'linkedin', 'tiktok', 'bing'])[1 + floor(random() * 8)::int]
                           AS source, i AS k) pick
CROSS JOIN LATERAL (SELECT pick.source, CASE pick.source WHEN 'google' THEN 'cpc'
        WHEN 'bing' THEN 'cpc' WHEN 'newsletter' THEN 'email' WHEN 'partner' THEN 'referral'
        WHEN 'direct' THEN '(none)' ELSE 'paid-social' END AS medium) s;
CREATE TABLE bench_stage_events AS
WITH l AS (
  SELECT lead_id, captured_at AS t1,
         captured_at
           + ((ARRAY[0, 1, 2, 5, 13, 14, 15, 20])[1 + floor(random() * 8)::int]
              || ' days')::interval
           + (floor(random() * 600) || ' minutes')::interval AS t2,
         random() AS r2, random() AS r3, random() AS r4, random() AS r5,
         ((ARRAY[0, 1, 3, 7, 14, 30])[1 + floor(random() * 6)::int] || ' days')::interval AS d3,
         ((ARRAY[0, 1, 2, 14])[1 + floor(random() * 4)::int] || ' days')::interval AS d4,
         ((ARRAY[1, 30, 60])[1 + floor(random() * 3)::int] || ' days')::interval AS d5
  FROM bench_leads)
SELECT lead_id, 'awareness'::text AS stage, 0 AS position, t1 AS changed_at FROM l
UNION ALL SELECT lead_id, 'interest', 1, t2 FROM l WHERE r2 < 0.55
UNION ALL SELECT lead_id, 'desire', 2, t2 + d3 FROM l WHERE r2 < 0.55 AND r3 < 0.5
UNION ALL SELECT lead_id, 'action', 3, t2 + d3 + d4 FROM l
    WHERE r2 < 0.55 AND r3 < 0.5 AND r4 < 0.45
UNION ALL SELECT lead_id, 'loyalty', 4, t2 + d3 + d4 + d5 FROM l
    WHERE r2 < 0.55 AND r3 < 0.5 AND r4 < 0.45 AND r5 < 0.4;
CREATE INDEX ON bench_stage_events (stage, changed_at, lead_id);
CREATE INDEX ON bench_stage_events (lead_id, stage, changed_at);
ALTER TABLE bench_leads ADD PRIMARY KEY (lead_id);
"""

ALL_DIMS = {
    "all": "''",
    "first_source": "l.source",
    "last_source": "l.last_source",
    "first_medium": "l.medium",
    "last_medium": "l.medium",
    "first_campaign": "l.campaign",
    "last_campaign": "l.campaign",
    "first_form": "l.form",
    "last_form": "l.form",
    "first_landing_page": "l.landing_page",
    "last_landing_page": "l.landing_page",
}
TIMED_DIMS = ("all", "first_campaign")  # the dimensions the timed queries read


def dims_sql(names: tuple[str, ...]) -> str:
    values = ", ".join(f"('{name}', {ALL_DIMS[name]})" for name in names)
    return f"CROSS JOIN LATERAL (VALUES {values}) d(dim, value)"


# The aggregates the projection would have built from these events, in bulk (each lead
# enters each stage once here, so its first entries are its entries). Constant SQL text.
AGGREGATE_SQL = """
TRUNCATE reporting.entry_counts, reporting.pair_conversions, reporting.funnel_stages,
         reporting.stage_counts,
         reporting.entry_counts_hourly, reporting.pair_conversions_hourly,
         reporting.entry_counts_daily, reporting.pair_conversions_daily,
         reporting.entry_counts_6h, reporting.pair_conversions_6h,
         reporting.entry_counts_weekly, reporting.pair_conversions_weekly;
INSERT INTO reporting.funnel_stages
SELECT DISTINCT 'digital-sales', stage, position FROM bench_stage_events;
INSERT INTO reporting.stage_counts (funnel_id, stage, leads)
SELECT 'digital-sales', stage, count(*)
FROM (SELECT DISTINCT ON (lead_id) stage FROM bench_stage_events
      ORDER BY lead_id, changed_at DESC, position DESC) current GROUP BY stage;
INSERT INTO reporting.entry_counts (funnel_id, stage, dim, hour, value, leads)
SELECT 'digital-sales', e.stage, d.dim,
       date_bin('15 minutes', e.changed_at, timestamptz '2001-01-01 00:00+00'), d.value, count(*)
FROM bench_stage_events e JOIN bench_leads l USING (lead_id) DIMS
GROUP BY 2, 3, 4, 5;
INSERT INTO reporting.pair_conversions
SELECT 'digital-sales', a.stage, b.stage, d.dim,
       date_bin('15 minutes', a.changed_at, timestamptz '2001-01-01 00:00+00'), d.value,
       count(*) FILTER (WHERE b.changed_at - a.changed_at <= interval '1 day'),
       count(*) FILTER (WHERE b.changed_at - a.changed_at <= interval '3 days'),
       count(*) FILTER (WHERE b.changed_at - a.changed_at <= interval '7 days'),
       count(*) FILTER (WHERE b.changed_at - a.changed_at <= interval '14 days'),
       count(*) FILTER (WHERE b.changed_at - a.changed_at <= interval '30 days'),
       count(*) FILTER (WHERE b.changed_at - a.changed_at <= interval '60 days'),
       count(*) FILTER (WHERE b.changed_at - a.changed_at <= interval '90 days'),
       count(*)
FROM bench_stage_events a
JOIN bench_stage_events b ON b.lead_id = a.lead_id AND b.position > a.position
     AND b.changed_at >= a.changed_at
JOIN bench_leads l ON l.lead_id = a.lead_id DIMS
GROUP BY 2, 3, 4, 5, 6;
INSERT INTO reporting.entry_counts_hourly
SELECT funnel_id, stage, dim, date_trunc('hour', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       value, sum(leads)
FROM reporting.entry_counts GROUP BY 1, 2, 3, 4, 5;
INSERT INTO reporting.pair_conversions_hourly
SELECT funnel_id, from_stage, to_stage, dim,
       date_trunc('hour', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', value,
       sum(c1d), sum(c3d), sum(c7d), sum(c14d), sum(c30d), sum(c60d), sum(c90d), sum(c_any)
FROM reporting.pair_conversions GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO reporting.entry_counts_daily
SELECT funnel_id, stage, dim, date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       value, sum(leads)
FROM reporting.entry_counts_hourly GROUP BY 1, 2, 3, 4, 5;
INSERT INTO reporting.pair_conversions_daily
SELECT funnel_id, from_stage, to_stage, dim,
       date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', value,
       sum(c1d), sum(c3d), sum(c7d), sum(c14d), sum(c30d), sum(c60d), sum(c90d), sum(c_any)
FROM reporting.pair_conversions_hourly GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO reporting.entry_counts_6h
SELECT funnel_id, stage, dim, date_bin('6 hours', hour, timestamptz '2001-01-01 00:00+00'),
       value, sum(leads)
FROM reporting.entry_counts_hourly GROUP BY 1, 2, 3, 4, 5;
INSERT INTO reporting.pair_conversions_6h
SELECT funnel_id, from_stage, to_stage, dim,
       date_bin('6 hours', hour, timestamptz '2001-01-01 00:00+00'), value,
       sum(c1d), sum(c3d), sum(c7d), sum(c14d), sum(c30d), sum(c60d), sum(c90d), sum(c_any)
FROM reporting.pair_conversions_hourly GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO reporting.entry_counts_weekly
SELECT funnel_id, stage, dim, date_trunc('week', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       value, sum(leads)
FROM reporting.entry_counts_daily GROUP BY 1, 2, 3, 4, 5;
INSERT INTO reporting.pair_conversions_weekly
SELECT funnel_id, from_stage, to_stage, dim,
       date_trunc('week', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', value,
       sum(c1d), sum(c3d), sum(c7d), sum(c14d), sum(c30d), sum(c60d), sum(c90d), sum(c_any)
FROM reporting.pair_conversions_daily GROUP BY 1, 2, 3, 4, 5, 6;
ANALYZE;
"""

# The naive answer: straight from the raw events, per question.
NAIVE_SQL = """
WITH cohort AS (
  SELECT lead_id, min(changed_at) AS t1 FROM bench_stage_events WHERE stage = $1
  GROUP BY lead_id HAVING min(changed_at) >= $2 AND min(changed_at) < $3)
SELECT $1 AS stage, {segment} AS segment, count(*) AS n
FROM cohort c JOIN bench_leads l USING (lead_id) GROUP BY 2
UNION ALL
SELECT e.stage, {segment}, count(DISTINCT c.lead_id)
FROM cohort c JOIN bench_stage_events e ON e.lead_id = c.lead_id AND e.stage = ANY($4)
     AND e.changed_at >= c.t1 AND e.changed_at <= c.t1 + make_interval(days => $5)
JOIN bench_leads l ON l.lead_id = c.lead_id
GROUP BY 1, 2
"""
NAIVE_WEEKLY_SQL = """
WITH cohort AS (
  SELECT lead_id, min(changed_at) AS t1 FROM bench_stage_events WHERE stage = $1
  GROUP BY lead_id HAVING min(changed_at) >= $2 AND min(changed_at) < $3)
SELECT to_char(date_trunc('week', c.t1 AT TIME ZONE $4), 'YYYY-MM-DD') AS week,
       count(*) AS entered,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM bench_stage_events e WHERE e.lead_id = c.lead_id AND e.stage = $5
           AND e.changed_at >= c.t1 AND e.changed_at <= c.t1 + interval '14 days')) AS converted
FROM cohort c GROUP BY 1
"""
NAIVE_SNAPSHOT_SQL = """
SELECT stage, count(*) AS n
FROM (SELECT DISTINCT ON (lead_id) stage FROM bench_stage_events
      ORDER BY lead_id, changed_at DESC, position DESC) current GROUP BY stage
"""
NAIVE_TIME_TO_CONVERT_SQL = """
WITH cohort AS (
  SELECT lead_id, min(changed_at) AS t1 FROM bench_stage_events WHERE stage = $1
  GROUP BY lead_id HAVING min(changed_at) >= $2 AND min(changed_at) < $3),
took AS (
  SELECT min(e.changed_at) - c.t1 AS d FROM cohort c
  JOIN bench_stage_events e ON e.lead_id = c.lead_id AND e.stage = $4 AND e.changed_at >= c.t1
  GROUP BY c.lead_id, c.t1)
SELECT (SELECT count(*) FROM cohort) AS entered,
       count(*) FILTER (WHERE d <= interval '1 day') AS c1d,
       count(*) FILTER (WHERE d <= interval '3 days') AS c3d,
       count(*) FILTER (WHERE d <= interval '7 days') AS c7d,
       count(*) FILTER (WHERE d <= interval '14 days') AS c14d,
       count(*) FILTER (WHERE d <= interval '30 days') AS c30d,
       count(*) FILTER (WHERE d <= interval '60 days') AS c60d,
       count(*) FILTER (WHERE d <= interval '90 days') AS c90d,
       count(*) AS c_any
FROM took
"""
SIZED = (
    "bench_leads",
    "bench_stage_events",
    "entry_counts",
    "pair_conversions",
    "entry_counts_hourly",
    "pair_conversions_hourly",
    "entry_counts_daily",
    "pair_conversions_daily",
    "entry_counts_6h",
    "pair_conversions_6h",
    "entry_counts_weekly",
    "pair_conversions_weekly",
)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def _aggregate_answer(
    conn: asyncpg.Connection, breakdown: str | None, period: Period = PERIOD
) -> dict[str, Any]:
    dim = "all" if breakdown is None else f"first_{breakdown}"
    entered, reached = await queries.conversion_counts(
        conn, "digital-sales", STAGES, period, window_days=14, cohort="none", dim=dim
    )
    groups = conversion_groups(STAGES, entered, reached)
    return {g["segment"] or "": [s["leads"] for s in g["steps"]] for g in groups}


Answer = Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]]


# The conversion query as it was before decision record 0059, for the same-run comparison:
# two statements, each row's counters read from the heap (index-only scans turned off).
PREVIOUS_ENTERED_SQL = """SELECT r.cohort, t.value AS segment, sum(r.sign * t.leads)::bigint AS n
FROM {rows} GROUP BY 1, 2"""
PREVIOUS_REACHED_SQL = """SELECT r.cohort, t.value AS segment, t.to_stage,
       sum(r.sign * t.counted)::bigint AS n
FROM {rows} WHERE t.to_stage = ANY($9::text[]) GROUP BY 1, 2, 3"""


async def _previous_answer(
    conn: asyncpg.Connection, breakdown: str, period: Period = PERIOD
) -> dict[str, Any]:
    args = queries._slot_args(period, "none")
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_indexonlyscan = off")
        entered_rows = await conn.fetch(
            PREVIOUS_ENTERED_SQL.format(
                rows=queries._slot_rows("entry_counts", "value, leads", queued=False)
            ),
            "digital-sales",
            STAGES[0],
            f"first_{breakdown}",
            *args,
        )
        reached_rows = await conn.fetch(
            PREVIOUS_REACHED_SQL.format(
                rows=queries._slot_rows(
                    "pair_conversions", "value, to_stage, c14d AS counted", queued=False
                )
            ),
            "digital-sales",
            STAGES[0],
            f"first_{breakdown}",
            *args,
            STAGES[1:],
        )
    entered = {(r["cohort"], r["segment"]): int(r["n"]) for r in entered_rows if r["n"]}
    reached = {(r["cohort"], r["segment"], r["to_stage"]): int(r["n"]) for r in reached_rows}
    groups = conversion_groups(STAGES, entered, reached)
    return {g["segment"] or "": [s["leads"] for s in g["steps"]] for g in groups}


# The questions also timed against the previous query shape (heap reads, two statements).
PREVIOUS: dict[str, Answer] = {}


async def _unqueued_answer(
    conn: asyncpg.Connection, breakdown: str, period: Period = PERIOD
) -> dict[str, Any]:
    """The conversion statement before docs/decisions/0067: the tables only, no queue."""
    dim = f"first_{breakdown}"
    rows = await conn.fetch(
        queries.conversion_sql(dim, "c14d", queued=False),
        "digital-sales",
        STAGES[0],
        dim,
        *queries._slot_args(period, "none"),
        STAGES[1:],
    )
    groups = conversion_groups(STAGES, *queries.entered_and_reached(rows))
    return {g["segment"] or "": [s["leads"] for s in g["steps"]] for g in groups}


# The same questions without the queued deltas (the statement before 0067), in the same run.
UNQUEUED: dict[str, Answer] = {
    "conversion by campaign": lambda c: _unqueued_answer(c, "campaign"),
    "conversion by campaign (Asia/Kolkata)": lambda c: _unqueued_answer(
        c, "campaign", PERIOD_INDIA
    ),
}


async def _queue_deltas(conn: asyncpg.Connection, deltas: int) -> None:
    """What the fold has not yet taken when a report runs: `deltas` quarter-hour deltas per
    conversion table in queue rows of up to 500 (a partition batch's worth of one funnel,
    first stage and dimension), the latest rows of every dimension each added once and taken
    away once, so every answer stays the same while a report reads and filters them."""
    for table in ("entry_counts", "pair_conversions"):
        spec = store.TABLES[table]
        by = store.QUEUED_BY[table]
        rest = [c for c, _ in spec.keys + spec.values if c not in by]
        values = {c for c, _ in spec.values}
        for sign in (1, -1):
            aggregated = ", ".join(
                f"array_agg({sign} * {c})" if c in values else f"array_agg({c})" for c in rest
            )
            await conn.execute(
                f"""INSERT INTO {table}_queue ({", ".join(by)}, {", ".join(rest)})
                    SELECT {", ".join(by)}, {aggregated}
                    FROM (SELECT *, (row_number() OVER (PARTITION BY {", ".join(by)}) - 1)
                                    / 500 AS chunk
                          FROM (SELECT * FROM {table} ORDER BY hour DESC
                                LIMIT {int(deltas)}) latest) r
                    GROUP BY {", ".join(by)}, chunk"""  # noqa: S608
            )


async def _naive_answer(
    conn: asyncpg.Connection, breakdown: str | None, period: Period = PERIOD
) -> dict[str, Any]:
    segment = "''" if breakdown is None else f"l.{breakdown}"
    rows = await conn.fetch(
        NAIVE_SQL.format(segment=segment),
        STAGES[0],
        period.utc_from,
        period.utc_to,
        STAGES[1:],
        14,
    )
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r["segment"], [0] * len(STAGES))[STAGES.index(r["stage"])] = int(r["n"])
    return out


async def _weekly_answer(conn: asyncpg.Connection, period: Period = PERIOD) -> dict[str, Any]:
    entered, reached = await queries.conversion_counts(
        conn,
        "digital-sales",
        [STAGES[0], STAGES[-1]],
        period,
        window_days=14,
        cohort="week",
        dim="all",
    )
    return {
        str(week): [n, reached.get((week, None, STAGES[-1]), 0)] for (week, _), n in entered.items()
    }


async def _naive_weekly(conn: asyncpg.Connection, period: Period = PERIOD) -> dict[str, Any]:
    rows = await conn.fetch(
        NAIVE_WEEKLY_SQL,
        STAGES[0],
        period.utc_from,
        period.utc_to,
        period.time_zone,
        STAGES[-1],
    )
    return {r["week"]: [int(r["entered"]), int(r["converted"])] for r in rows}


async def _snapshot_answer(conn: asyncpg.Connection) -> dict[str, Any]:
    rows = await queries.stage_counts(conn, "digital-sales")
    return {r["stage"]: int(r["leads"]) for r in rows}


async def _naive_snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    return {r["stage"]: int(r["n"]) for r in await conn.fetch(NAIVE_SNAPSHOT_SQL)}


async def _time_to_convert_answer(conn: asyncpg.Connection) -> dict[str, Any]:
    return await queries.time_to_convert(conn, "digital-sales", STAGES[0], STAGES[-1], PERIOD)


async def _naive_time_to_convert(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(
        NAIVE_TIME_TO_CONVERT_SQL, STAGES[0], PERIOD.utc_from, PERIOD.utc_to, STAGES[-1]
    )
    assert row is not None
    return {k: int(row[k]) for k in ("entered", *WINDOW_COLUMNS)}


# Every report question the generated tables can answer: (the service's code, the naive SQL).
QUESTIONS: dict[str, tuple[Answer, Answer]] = {
    "snapshot": (_snapshot_answer, _naive_snapshot),
    "conversion": (
        lambda c: _aggregate_answer(c, None),
        lambda c: _naive_answer(c, None),
    ),
    "conversion by campaign": (
        lambda c: _aggregate_answer(c, "campaign"),
        lambda c: _naive_answer(c, "campaign"),
    ),
    "conversion over time (weekly)": (_weekly_answer, _naive_weekly),
    "time to convert": (_time_to_convert_answer, _naive_time_to_convert),
    # The same questions in India (+05:30): the period's edges read quarter-hour rows.
    "conversion (Asia/Kolkata)": (
        lambda c: _aggregate_answer(c, None, PERIOD_INDIA),
        lambda c: _naive_answer(c, None, PERIOD_INDIA),
    ),
    "conversion by campaign (Asia/Kolkata)": (
        lambda c: _aggregate_answer(c, "campaign", PERIOD_INDIA),
        lambda c: _naive_answer(c, "campaign", PERIOD_INDIA),
    ),
    "conversion over time (weekly, Asia/Kolkata)": (
        lambda c: _weekly_answer(c, PERIOD_INDIA),
        lambda c: _naive_weekly(c, PERIOD_INDIA),
    ),
}


PREVIOUS.update(
    {
        "conversion by campaign": lambda c: _previous_answer(c, "campaign"),
        "conversion by campaign (Asia/Kolkata)": lambda c: _previous_answer(
            c, "campaign", PERIOD_INDIA
        ),
    }
)


async def _timed(fn: Answer, conn: asyncpg.Connection, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn(conn)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _stats(ms: list[float], digits: int) -> dict[str, float]:
    return {"p50": round(_p(ms, 0.5), digits), "p95": round(_p(ms, 0.95), digits), "runs": len(ms)}


async def query_bench(
    dsn: str,
    leads: int,
    runs: int,
    naive_runs: int,
    all_dims: bool,
    only: str | None = None,
    queued_deltas: int = 0,
) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, server_settings=server_settings("reporting"))
    try:
        started = time.perf_counter()
        await conn.execute(GENERATE_SQL.replace("$LEADS", str(int(leads))))
        generated = time.perf_counter() - started
        started = time.perf_counter()
        names = tuple(ALL_DIMS) if all_dims else TIMED_DIMS
        await conn.execute(AGGREGATE_SQL.replace("DIMS", dims_sql(names)))
        # What autovacuum does to the freshly written tables (migration 0011 has it run after
        # 2% of a conversion table changed): the visibility map lets the conversion queries
        # read their rows from the index alone. The raw tables of the naive answer too.
        for table in (*SIZED, "stage_counts", "funnel_stages"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        aggregated = time.perf_counter() - started
        if queued_deltas:
            await _queue_deltas(conn, queued_deltas)
        sizes = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in SIZED}  # noqa: S608
        log(f"{leads:,} leads: generated {generated:.0f}s, aggregated {aggregated:.0f}s: {sizes}")
        result: dict[str, Any] = {
            "leads": leads,
            "rows": sizes,
            "generate_seconds": round(generated, 1),
            "aggregate_seconds": round(aggregated, 1),
            "dimensions": list(names),
            "queued_deltas_per_table": queued_deltas,
            "queries": {},
        }
        for name, (fast_fn, naive_fn) in QUESTIONS.items():
            if only and only not in name:
                continue
            fast = await fast_fn(conn)
            slow = await naive_fn(conn)
            assert fast == slow, f"{name}: aggregate {fast} != naive {slow}"
            # Alternating rounds: a share of the aggregate runs, then one naive run (or the
            # other way round), so both see the same moments of a shared machine.
            agg_ms: list[float] = []
            naive_ms: list[float] = []
            for r in range(naive_runs):
                share = runs // naive_runs
                if r % 2 == 0:
                    agg_ms += await _timed(fast_fn, conn, share)
                    naive_ms += await _timed(naive_fn, conn, 1)
                else:
                    naive_ms += await _timed(naive_fn, conn, 1)
                    agg_ms += await _timed(fast_fn, conn, share)
            fast_stats, naive_stats = _stats(agg_ms, 2), _stats(naive_ms, 1)
            entry = {
                "answers_equal": True,
                "aggregate_ms": fast_stats,
                "naive_ms": naive_stats,
                "ratio_naive_to_aggregate_p95": round(naive_stats["p95"] / fast_stats["p95"], 1),
            }
            if name in PREVIOUS:
                # The same question by the previous query shape, in alternating rounds with
                # the current one: ratio = previous p95 / current p95.
                previous_fn = PREVIOUS[name]
                assert await previous_fn(conn) == fast, f"{name}: previous shape differs"
                now_ms: list[float] = []
                before_ms: list[float] = []
                for r in range(10):
                    pair = ((now_ms, fast_fn), (before_ms, previous_fn))
                    for out, fn in pair if r % 2 == 0 else pair[::-1]:
                        out += await _timed(fn, conn, runs // 10)
                now_stats, before_stats = _stats(now_ms, 2), _stats(before_ms, 2)
                entry |= {
                    "current_ms": now_stats,
                    "previous_ms": before_stats,
                    "ratio_previous_to_current_p95": round(
                        before_stats["p95"] / now_stats["p95"], 2
                    ),
                }
            if name in UNQUEUED:
                # The same question without the queued deltas (before 0067), alternating:
                # ratio = current p95 / unqueued p95 (what reading the queue costs).
                unqueued_fn = UNQUEUED[name]
                assert await unqueued_fn(conn) == fast, f"{name}: unqueued answer differs"
                with_ms: list[float] = []
                without_ms: list[float] = []
                for r in range(10):
                    pair = ((with_ms, fast_fn), (without_ms, unqueued_fn))
                    for out, fn in pair if r % 2 == 0 else pair[::-1]:
                        out += await _timed(fn, conn, runs // 10)
                with_stats, without_stats = _stats(with_ms, 2), _stats(without_ms, 2)
                entry |= {
                    "with_queue_ms": with_stats,
                    "without_queue_ms": without_stats,
                    "ratio_with_to_without_queue_p95": round(
                        with_stats["p95"] / without_stats["p95"], 2
                    ),
                }
            result["queries"][name] = entry
            log(f"{leads:,} {name}: {entry}")
        result["load_average"] = [round(x, 1) for x in os.getloadavg()]
        return result
    finally:
        await conn.close()


async def projection_bench(dsn: str, leads: int, durable: bool) -> dict[str, Any]:
    """Events per second through the real handler, one transaction per event with its inbox
    row, as the consumer runs it; Kafka is not in the loop. `durable=False` turns off
    synchronous_commit for the session: a measurement of the work per event without the
    commit's fsync, never a setting the service may use (offsets follow the commit)."""
    schema = "reporting_projection"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await migrations.apply(conn, schema, MIGRATIONS)
    finally:
        await conn.close()
    pool = await create_pool(dsn, schema, min_size=1, max_size=1)
    events = generate(leads, seed=1).events
    envelopes = [Envelope.of(e, source="bench") for e in events]
    try:
        async with pool.acquire() as conn:
            if not durable:
                await conn.execute("SET synchronous_commit = off")
            started, cpu = time.perf_counter(), time.process_time()
            for envelope, event in zip(envelopes, events, strict=True):
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO inbox (source, event_id, event_type) VALUES ($1, $2, $3)",
                        envelope.source,
                        envelope.id,
                        envelope.type,
                    )
                    await handle(conn, envelope, event)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await pool.close()
    rate = len(events) / seconds
    mode = "fsync per commit" if durable else "no commit fsync (measurement only)"
    log(f"projection ({mode}): {len(events)} events in {seconds:.1f}s = {rate:.0f} events/s")
    return {
        "mode": mode,
        "events": len(events),
        "seconds": round(seconds, 2),
        "events_per_second": round(rate),
        "client_cpu_ms_per_event": round(cpu * 1000 / len(events), 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    setup = ("ALTER SYSTEM SET work_mem = '64MB'", "SELECT pg_reload_conf()")
    async with migrated_postgres(
        "reporting", MIGRATIONS, name="reporting", setup_sql=setup
    ) as server:
        result: dict[str, Any] = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "period": f"{PERIOD.start}..{PERIOD.end} {TZ}",
            "scales": [],
        }
        result["projection"] = [
            await projection_bench(server.dsn, args.projection_leads, durable)
            for durable in (True, False)
            if not args.skip_projection
        ]
        for leads in args.leads:
            result["scales"].append(
                await query_bench(
                    server.dsn,
                    leads,
                    args.runs,
                    args.naive_runs,
                    leads <= args.all_dims_up_to,
                    args.only,
                    args.queued_deltas,
                )
            )
        return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Reporting benchmark, {result['started_at']}",
        "",
        f"Period {result['period']}, the five digital-sales stages, 14-day window.",
        "",
        "| leads | query | aggregate p50 ms | aggregate p95 ms | naive p50 ms | naive p95 ms "
        "| **naive / aggregate (p95)** |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scale in result["scales"]:
        for name, q in scale["queries"].items():
            lines.append(
                f"| {scale['leads']:,} | {name} | {q['aggregate_ms']['p50']} | "
                f"{q['aggregate_ms']['p95']} | {q['naive_ms']['p50']} | {q['naive_ms']['p95']} | "
                f"**{q['ratio_naive_to_aggregate_p95']}x** |"
            )
    lines.append("")
    for scale in result["scales"]:
        for name, q in scale["queries"].items():
            if "previous_ms" in q:
                lines.append(
                    f"- {scale['leads']:,} {name}: current p50/p95 {q['current_ms']['p50']}/"
                    f"{q['current_ms']['p95']} ms, previous shape (heap, two statements) "
                    f"{q['previous_ms']['p50']}/{q['previous_ms']['p95']} ms: "
                    f"**{q['ratio_previous_to_current_p95']}x** (p95), load average "
                    f"{scale['load_average']}"
                )
    for scale in result["scales"]:
        for name, q in scale["queries"].items():
            if "with_queue_ms" in q:
                lines.append(
                    f"- {scale['leads']:,} {name}: with {scale['queued_deltas_per_table']} "
                    f"queued deltas per table p50/p95 {q['with_queue_ms']['p50']}/"
                    f"{q['with_queue_ms']['p95']} ms, the statement without the queue "
                    f"{q['without_queue_ms']['p50']}/{q['without_queue_ms']['p95']} ms: "
                    f"**{q['ratio_with_to_without_queue_p95']}x** (p95), load average "
                    f"{scale['load_average']}"
                )
    for scale in result["scales"]:
        lines.append(
            f"- {scale['leads']:,} leads: rows {scale['rows']}; dimensions built:"
            f" {len(scale['dimensions'])} of {len(ALL_DIMS)}"
        )
    lines += [
        "",
        "| projection | events | seconds | events/s | client CPU ms/event |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for p in result["projection"]:
        lines.append(
            f"| {p['mode']} | {p['events']} | {p['seconds']} | **{p['events_per_second']}** "
            f"| {p['client_cpu_ms_per_event']} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Reporting query latency and projection rate.")
    parser.add_argument("--leads", type=int, action="append", help="scale; repeat for several")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per aggregate query")
    parser.add_argument("--naive-runs", type=int, default=5, help="timed runs per naive query")
    parser.add_argument("--projection-leads", type=int, default=1000)
    parser.add_argument(
        "--all-dims-up-to",
        type=int,
        default=1_000_000,
        help="above this many leads, only the dimensions the timed queries read are built"
        " (the bulk build of all eleven takes ~9 min per million leads on 2 cores)",
    )
    parser.add_argument(
        "--only", help="time only the questions whose name contains this (e.g. 'by campaign')"
    )
    parser.add_argument("--skip-projection", action="store_true", help="time the queries only")
    parser.add_argument(
        "--queued-deltas",
        type=int,
        default=10_000,
        help="conversion deltas per table left in the fold's queue while timing (they sum to"
        " zero); 0 for an empty queue",
    )
    args = parser.parse_args(argv)
    args.leads = args.leads or [1_000_000]
    result = asyncio.run(run(args))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"reporting-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS_DIR / f"reporting-{stamp}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
