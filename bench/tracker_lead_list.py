"""The tracker's work queue at scale: a page of a funnel's leads by their score NOW (cooled by
the wall clock) through the service's own query, against the naive query that computes every
lead's decayed score and sorts.

`.venv/bin/python -m bench.tracker_lead_list [--leads 1000000] [--runs 200] [--naive-runs 20]`

A fresh PostgreSQL (the devstack's, fsync on) gets the tracker's migrations and `--leads`
leads in one funnel (digital-sales v1: half-life 14 days, fits 0/10/20, a third without
engagement, engagement evaluated at times spread over 60 days, five owners), generated in SQL
with the decay key the tracker stores. Each question is answered by
`stage_tracker.queue.service.list_leads` (the skip scan of the score groups, then one index
range scan per group, merged) and by the naive SQL; the two answers are compared before
timing (same leads, same order). Rounds alternate so both see the same moments of a shared
machine. Prints p50/p95 and **ratio = naive p95 / service p95**; never asserts times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from funnel_servicekit.db import server_settings

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, latency_stats, log, migrated_postgres, timed_ms
from stage_tracker.app import MIGRATIONS
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.queue import service
from stage_tracker.queue.models import LeadFilter

FUNNEL = "digital-sales"
H = 14 * 86400.0
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

GENERATE_SQL = """
SELECT setseed(0.23);
INSERT INTO lead_stages (lead_id, funnel_id, funnel_version, stage, entered_at, fit_score,
    engagement_score, score, temperature, answers, last_activity_at, as_of, timer_due_at,
    owner, half_life_seconds, decay_sign, decay_key)
SELECT md5(i::text)::uuid, 'digital-sales', 1, g.stage, g.as_of - interval '2 days', g.fit,
       g.eng, g.fit + g.eng, 'cold', '{}', g.as_of, g.as_of, g.as_of + interval '30 days',
       g.owner, $H, sign(g.eng)::smallint,
       CASE WHEN g.eng = 0 THEN '-Infinity'::float8
            ELSE ln(g.eng) / ln(2::float8) + extract(epoch FROM g.as_of)::float8 / $H END
FROM generate_series(1, $LEADS) i
CROSS JOIN LATERAL (
    SELECT (ARRAY['awareness', 'awareness', 'interest', 'interest', 'desire', 'action',
                  'loyalty', 'stalled', 'lost'])[1 + floor(random() * 9)::int] AS stage,
           (ARRAY[0, 0, 10, 20])[1 + floor(random() * 4)::int]::float8 AS fit,
           CASE WHEN random() < 0.33 THEN 0
                ELSE round((random() * 80)::numeric, 2)::float8 END AS eng,
           timestamptz '2026-12-01 12:00+00' - (random() * 60 * 86400) * interval '1 second'
               AS as_of,
           (ARRAY['ana', 'ben', 'carla', 'dev', 'eve', NULL])[1 + floor(random() * 6)::int]
               AS owner,
           i AS k) g;
ANALYZE lead_stages;
"""

# Every lead of the stage: its score now computed, all of them sorted.
SCORE_NOW = """fit_score + engagement_score * power(2::float8,
        -($2 - extract(epoch FROM coalesce(as_of, entered_at))::float8) / half_life_seconds)"""
NAIVE_SQL = """
SELECT lead_id FROM lead_stages
WHERE funnel_id = $1 {filters} AND {score} >= $3
ORDER BY {score} DESC, lead_id DESC
LIMIT 50
"""


QUESTIONS: dict[str, dict[str, Any]] = {
    "stage=interest, -score, 50": {"stage": "interest"},
    "whole funnel, -score, 50": {},
    "stage=desire, owner=ana, -score, 50": {"stage": "desire", "owner": "ana"},
    "stage=interest, hot, -score, 50": {"stage": "interest", "temperature": "hot"},
}

Answer = Callable[[asyncpg.Connection], Awaitable[list[Any]]]


def _service(registry: FunnelRegistry, params: dict[str, Any]) -> Answer:
    query = LeadFilter(FUNNEL, **params)

    async def answer(conn: asyncpg.Connection) -> list[Any]:
        page = await service.list_leads(conn, registry, query, "-score", 50, NOW)
        return [item["lead_id"] for item in page.items]

    return answer


def _naive(params: dict[str, Any]) -> Answer:
    hot = 50.0 if params.get("temperature") == "hot" else float("-inf")
    filters = "".join(
        f" AND {column} = '{params[column]}'" for column in ("stage", "owner") if column in params
    )
    sql = NAIVE_SQL.format(filters=filters, score=SCORE_NOW)

    async def answer(conn: asyncpg.Connection) -> list[Any]:
        rows = await conn.fetch(sql, FUNNEL, NOW.timestamp(), hot)
        return [str(r["lead_id"]) for r in rows]

    return answer


async def _timed(fn: Answer, conn: asyncpg.Connection, runs: int) -> list[float]:
    return await timed_ms(lambda: fn(conn), runs)


async def measure(dsn: str, leads: int, runs: int, naive_runs: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, server_settings=server_settings("tracker"))
    try:
        started = time.perf_counter()
        sql = GENERATE_SQL.replace("$LEADS", str(int(leads))).replace("$H", repr(H))
        await conn.execute(sql)
        generated = time.perf_counter() - started
        log(f"{leads:,} leads generated in {generated:.0f}s")
        groups = await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT stage, fit_score, decay_sign FROM lead_stages) g"
        )
        result: dict[str, Any] = {
            "leads": leads,
            "generate_seconds": round(generated, 1),
            "score_groups_all_stages": int(groups),
            "questions": {},
        }
        registry = FunnelRegistry()
        for name, params in QUESTIONS.items():
            fast, slow = _service(registry, params), _naive(params)
            got, want = await fast(conn), await slow(conn)
            assert got == want, f"{name}: service {got[:3]}... != naive {want[:3]}..."
            fast_ms: list[float] = []
            naive_ms: list[float] = []
            share = max(1, runs // naive_runs)
            for r in range(naive_runs):
                if r % 2 == 0:
                    fast_ms += await _timed(fast, conn, share)
                    naive_ms += await _timed(slow, conn, 1)
                else:
                    naive_ms += await _timed(slow, conn, 1)
                    fast_ms += await _timed(fast, conn, share)
            f, n = latency_stats(fast_ms), latency_stats(naive_ms)
            entry = {
                "answers_equal": True,
                "items": len(got),
                "service_ms": f,
                "naive_ms": n,
                "ratio_naive_to_service_p95": round(n["p95"] / f["p95"], 1),
            }
            result["questions"][name] = entry
            log(f"{name}: {entry}")
        return result
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with migrated_postgres("tracker", MIGRATIONS, name="tracker") as server:
        result = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        return result | await measure(server.dsn, args.leads, args.runs, args.naive_runs)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Tracker work queue, {result['started_at']}: {result['leads']:,} leads in one funnel",
        "",
        "| question | service p50 ms | service p95 ms | naive p50 ms | naive p95 ms "
        "| **naive / service (p95)** |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, q in result["questions"].items():
        lines.append(
            f"| {name} | {q['service_ms']['p50']} | {q['service_ms']['p95']} | "
            f"{q['naive_ms']['p50']} | {q['naive_ms']['p95']} | "
            f"**{q['ratio_naive_to_service_p95']}x** |"
        )
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The tracker's lead list against the naive sort.")
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--naive-runs", type=int, default=20)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "tracker_lead_list.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS_DIR / "tracker_lead_list.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
