"""Sales task use cases at volume, on a real PostgreSQL: list pages (newest first, cursor
pages) from the first page to the last, filtered lists, and changes (PATCH's use case:
lock, If-Match, update, task.updated in the outbox).

What it shows: a cursor page costs the same at the end of the list as at its start (keyset
on (created_at, id), no OFFSET), and the time of one change.

Run: `.venv/bin/python -m bench.notifier_tasks [--tasks 50000]`.
Results: bench/results/notifier-tasks-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, log, median, percentile
from funnel_devstack.ports import free_port
from funnel_devstack.postgres import PostgresServer
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from funnel_servicekit.unit_of_work import Outbox, Transactions
from notifier.app import MIGRATIONS
from notifier.tasks import service
from notifier.tasks.models import Cursor, TaskFilter

PAGE = 200
ASSIGNEES = ["ana", "ben", "cy", "dee", None]


async def _seed(pool: asyncpg.Pool, count: int) -> None:
    """`count` tasks over 10 minutes of creation times, a fifth each to five assignees
    (one of them nobody), one in three done, one per lead."""
    await pool.execute(
        """INSERT INTO tasks (id, lead_id, playbook, title, funnel_id, stage, status, assignee,
                              due_at, created_at, updated_at)
           SELECT gen_random_uuid(), gen_random_uuid(), 'hot-lead-call', 'Hot lead: call now',
                  'digital-sales', 'interest',
                  CASE WHEN i % 3 = 0 THEN 'done' ELSE 'open' END,
                  (ARRAY['ana', 'ben', 'cy', 'dee', NULL])[1 + i % 5],
                  now() - make_interval(secs => i * 600.0 / $1) + interval '1 day',
                  now() - make_interval(secs => i * 600.0 / $1),
                  now() - make_interval(secs => i * 600.0 / $1)
           FROM generate_series(1, $1) AS i""",
        count,
    )
    await pool.execute("ANALYZE tasks")


async def _walk(pool: asyncpg.Pool, **filters: Any) -> tuple[list[float], int]:
    """Every page of a list, in order: each page's time (ms) and the tasks seen."""
    times: list[float] = []
    after: Cursor | None = None
    seen = 0
    while True:
        async with pool.acquire() as conn:
            started = time.perf_counter()
            page = await service.list_tasks(conn, TaskFilter(**filters), after=after, limit=PAGE)
            times.append((time.perf_counter() - started) * 1000)
        seen += len(page.items)
        if page.next_after is None:
            return times, seen
        after = Cursor.decode(page.next_after)


def _stats(times: list[float]) -> dict[str, float]:
    return {
        "pages": len(times),
        "ms_p50": round(median(times), 2),
        "ms_p99": round(percentile(times, 99), 2),
        "first_10_ms_median": round(median(times[:10]), 2),
        "last_10_ms_median": round(median(times[-10:]), 2),
    }


async def _changes(pool: asyncpg.Pool, count: int) -> dict[str, float]:
    tx = Transactions(pool, Outbox("notifier", "notifier"))
    ids: list[UUID] = [r["id"] for r in await pool.fetch("SELECT id FROM tasks LIMIT $1", count)]
    times: list[float] = []
    for task_id in ids:
        started = time.perf_counter()
        await service.change_task(
            tx,
            service.Change(task_id, {"status": "dismissed", "assignee": "ana"}, actor="ben",
                           if_match='"1"', assignees=frozenset({"ana", "ben"})),
        )  # fmt: skip
        times.append((time.perf_counter() - started) * 1000)
    events = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE event_type = 'funnel.task.updated.v1'"
    )
    assert events == len(ids), (events, len(ids))
    return {
        "changes": len(ids),
        "ms_p50": round(median(times), 2),
        "ms_p99": round(percentile(times, 99), 2),
        "per_s_sequential": round(len(ids) / (sum(times) / 1000), 1),
    }


def _fresh_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="funnel-bench-notifier-tasks-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user and must reach it
    return root


async def measure(tasks: int, changes: int) -> dict[str, Any]:
    root = _fresh_root()
    pg = PostgresServer(root / "postgres", free_port(), password=uuid4().hex, fast=False,
                        log_file=root / "postgres.log")  # fmt: skip
    try:
        pg.start()
        await pg.wait_ready()
        dsn = await pg.create_database("bench")
        conn = await asyncpg.connect(dsn)
        try:
            await migrations.apply(conn, "notifier", MIGRATIONS)
        finally:
            await conn.close()
        pool = await create_pool(dsn, "notifier", min_size=1, max_size=4)
        try:
            started = time.perf_counter()
            await _seed(pool, tasks)
            log(f"seeded {tasks} tasks in {time.perf_counter() - started:.1f}s")
            everything, seen = await _walk(pool, status=None, lead_id=None)
            assert seen == tasks, (seen, tasks)
            log(f"all: {_stats(everything)}")
            anas_open, seen_open = await _walk(pool, status="open", lead_id=None, assignee="ana")
            log(f"ana's open: {seen_open} tasks, {_stats(anas_open)}")
            changed = await _changes(pool, changes)
            log(f"changes: {changed}")
        finally:
            await pool.close()
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "tasks": tasks,
        "page_size": PAGE,
        "list_all": _stats(everything),
        "list_assignee_open": {**_stats(anas_open), "tasks": seen_open},
        "change": changed,
    }


def markdown(result: dict[str, Any]) -> str:
    every, anas, change = result["list_all"], result["list_assignee_open"], result["change"]
    return "\n".join(
        [
            f"# Notifier sales tasks, {result['started_at']}",
            "",
            f"{result['tasks']} tasks, pages of {result['page_size']}, newest first.",
            "",
            "| list | pages | p50 ms | p99 ms | first 10 pages ms | last 10 pages ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| all | {every['pages']} | {every['ms_p50']} | {every['ms_p99']} | "
            f"{every['first_10_ms_median']} | {every['last_10_ms_median']} |",
            f"| assignee=ana, status=open ({anas['tasks']}) | {anas['pages']} | {anas['ms_p50']} | "
            f"{anas['ms_p99']} | {anas['first_10_ms_median']} | {anas['last_10_ms_median']} |",
            "",
            f"Changes (lock, If-Match, update, task.updated in the outbox), one at a time: "
            f"p50 {change['ms_p50']} ms, p99 {change['ms_p99']} ms, "
            f"{change['per_s_sequential']}/s over {change['changes']}.",
            "",
        ]
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.notifier_tasks")
    parser.add_argument("--tasks", type=int, default=50000)
    parser.add_argument("--changes", type=int, default=500)
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result.update(asyncio.run(measure(args.tasks, args.changes)))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"notifier-tasks-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS_DIR / f"notifier-tasks-{stamp}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
