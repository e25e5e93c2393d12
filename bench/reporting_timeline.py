"""A person's timeline at scale: the first page of a lead with 2,000 items among 200,000 items
of other leads, through the service's own query, against naive layouts of the same rows.

`.venv/bin/python -m bench.reporting_timeline [--others 200000] [--items 2000] [--runs 200]`

A fresh PostgreSQL (the devstack's, fsync on; no Kafka, no services) gets reporting's
migrations; `timeline_timeline` is filled in SQL with the rows the projection writes (the
same kinds, keys and fields), the lead's items interleaved in time with everyone else's.
Timed: `reporting.timeline.service.timeline` (pool checkout, the page query on the index
(lead_id, at DESC, key DESC), the JSON items and the next cursor), first page of 50 and a
deep page (the 20th, by cursor). Baselines in the same run, on the same rows and server, in
alternating rounds: the same query on a copy of the table indexed on lead_id only (read
every item of the lead, then sort), and on a copy without an index. Answers are compared
first. **ratio = baseline p95 / service p95.** Prints figures; asserts no time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, latency_stats, log, migrated_postgres, timed_ms
from funnel_servicekit.db import create_pool
from reporting.settings import MIGRATIONS
from reporting.timeline import service
from reporting.timeline import store as timeline_store
from reporting.timeline.models import parse_before

LEAD = UUID("00000000-0000-4000-8000-00000000beef")
KINDS = (
    "activity",
    "stage_changed",
    "touch_sent",
    "touch_opened",
    "task",
    "call_logged",
    "note_added",
    "owner_changed",
)

# Items of `$LEADS` other leads ($PER each) and $ITEMS of the one lead, over 90 days, some at
# one instant (the key breaks ties); fields of the size the projection writes.
FILL_SQL = """
SELECT setseed(0.25);
INSERT INTO timeline_timeline (lead_id, at, key, kind, fields, touch_id)
SELECT lead_id, at, 'activity:' || gen_random_uuid(), kind,
       jsonb_build_object('activity_id', gen_random_uuid(), 'activity_type', 'page_view',
                          'page_path', 'shop.example/p/' || n, 'amount', NULL,
                          'currency', NULL, 'order_id', NULL, 'actor', 'ana',
                          'outcome', 'reached', 'text', 'a note of some forty characters'),
       NULL
FROM (
  SELECT CASE WHEN n <= $ITEMS THEN '$LEAD'::uuid
              ELSE ('00000000-0000-4000-8000-'
                    || lpad(to_hex((n - $ITEMS) % $LEADS), 12, '0'))::uuid
         END AS lead_id,
         timestamptz '2026-09-01 00:00+00'
             + (floor(random() * 90 * 24 * 60) || ' minutes')::interval AS at,
         ($KINDS)[1 + floor(random() * $NKINDS)::int] AS kind,
         n
  FROM generate_series(1, $ITEMS + $OTHERS) n
) g;
ANALYZE timeline_timeline;
CREATE TABLE bench_timeline_by_lead AS SELECT * FROM timeline_timeline;
CREATE INDEX ON bench_timeline_by_lead (lead_id);
CREATE TABLE bench_timeline_unindexed AS SELECT * FROM timeline_timeline;
ANALYZE bench_timeline_by_lead;
ANALYZE bench_timeline_unindexed;
"""


Answer = Callable[[], Awaitable[list[tuple[str, str]]]]


async def bench(dsn: str, others: int, items: int, runs: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "reporting,public"})
    try:
        started = time.perf_counter()
        kinds = "ARRAY[" + ", ".join(f"'{k}'" for k in KINDS) + "]"
        fill = (
            FILL_SQL.replace("$ITEMS", str(int(items)))
            .replace("$OTHERS", str(int(others)))
            .replace("$LEADS", str(max(int(others) // 100, 1)))
            .replace("$LEAD", str(LEAD))
            .replace("$NKINDS", str(len(KINDS)))
            .replace("$KINDS", kinds)
        )
        await conn.execute(fill)
        rows = int(await conn.fetchval("SELECT count(*) FROM timeline_timeline"))
        own = int(
            await conn.fetchval("SELECT count(*) FROM timeline_timeline WHERE lead_id=$1", LEAD)
        )
        log(f"filled {rows:,} items ({own:,} of the lead) in {time.perf_counter() - started:.1f}s")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + timeline_store.FIRST_PAGE,
                LEAD,
                51,
            )
        )
    finally:
        await conn.close()
    pool = await create_pool(dsn, "reporting", min_size=1, max_size=1)
    runtime: Any = SimpleNamespace(pool=pool)  # the service reads only the pool
    try:
        first = await service.timeline(runtime, LEAD, None, 50)
        # The 20th page's cursor, by following next_before.
        page, before = first, None
        for _ in range(19):
            assert page.next_before is not None
            before = parse_before(page.next_before)
            page = await service.timeline(runtime, LEAD, before, 50)
        deep_before = before
        assert deep_before is not None
        assert deep_before.key is not None
        async with pool.acquire() as c:
            deep_plan = "\n".join(
                r[0]
                for r in await c.fetch(
                    "EXPLAIN (ANALYZE, COSTS OFF) " + timeline_store.BEFORE_ITEM,
                    LEAD,
                    51,
                    deep_before.at,
                    deep_before.key,
                )
            )

        async def service_first() -> list[tuple[str, str]]:
            p = await service.timeline(runtime, LEAD, None, 50)
            return [(i["at"], i["kind"]) for i in p.items]

        async def service_deep() -> list[tuple[str, str]]:
            p = await service.timeline(runtime, LEAD, deep_before, 50)
            return [(i["at"], i["kind"]) for i in p.items]

        def naive(table: str, deep: bool) -> Answer:
            sql = (timeline_store.BEFORE_ITEM if deep else timeline_store.FIRST_PAGE).replace(
                "FROM timeline_timeline", f"FROM {table}"
            )

            async def answer() -> list[tuple[str, str]]:
                async with pool.acquire() as c:
                    args: list[Any] = [LEAD, 51]
                    if deep:
                        assert deep_before is not None
                        args += [deep_before.at, deep_before.key]
                    got = await c.fetch(sql, *args)
                return [(r["at"].isoformat(), r["kind"]) for r in got[:50]]

            return answer

        result: dict[str, Any] = {
            "items_total": rows,
            "items_of_the_lead": own,
            "first_page_plan": plan,
            "deep_page_plan": deep_plan,
            "pages": {},
        }
        for name, fast, baselines in (
            (
                "first page (50)",
                service_first,
                {
                    "index on lead_id only": naive("bench_timeline_by_lead", False),
                    "no index": naive("bench_timeline_unindexed", False),
                },
            ),
            (
                "20th page (50, by cursor)",
                service_deep,
                {
                    "index on lead_id only": naive("bench_timeline_by_lead", True),
                    "no index": naive("bench_timeline_unindexed", True),
                },
            ),
        ):
            expected = await fast()
            entry: dict[str, Any] = {}
            fast_ms: list[float] = []
            slow_ms: dict[str, list[float]] = {b: [] for b in baselines}
            for b, fn in baselines.items():
                assert await fn() == expected, f"{name}: {b} answers otherwise"
            # Alternating rounds: a share of the service's runs, then one of each baseline.
            rounds = 20
            for r in range(rounds):
                share = runs // rounds
                if r % 2 == 0:
                    fast_ms += await timed_ms(fast, share)
                for b, fn in baselines.items():
                    slow_ms[b] += await timed_ms(fn, max(runs // rounds // 2, 1))
                if r % 2 == 1:
                    fast_ms += await timed_ms(fast, share)
            entry["service_ms"] = latency_stats(fast_ms)
            for b, ms in slow_ms.items():
                stats = latency_stats(ms, 3)
                entry[f"{b} ms"] = stats
                entry[f"ratio {b} / service (p95)"] = round(
                    stats["p95"] / entry["service_ms"]["p95"], 1
                )
            result["pages"][name] = entry
            log(f"{name}: {json.dumps(entry)}")
        return result
    finally:
        await pool.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with migrated_postgres("reporting", MIGRATIONS, name="timeline") as server:
        result = await bench(server.dsn, args.others, args.items, args.runs)
        result["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--others", type=int, default=200_000, help="items of other leads")
    parser.add_argument("--items", type=int, default=2_000, help="items of the timed lead")
    parser.add_argument("--runs", type=int, default=200, help="timed requests per page")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"reporting-timeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(result["first_page_plan"])
    print(result["deep_page_plan"])
    print(f"{result['items_of_the_lead']:,} items of the lead among {result['items_total']:,}")
    for name, entry in result["pages"].items():
        print(f"{name}:")
        for key, value in entry.items():
            print(f"  {key}: {value}")
    print(f"written to {out.name} in bench/results/")


if __name__ == "__main__":
    main()
