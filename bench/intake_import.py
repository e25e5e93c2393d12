"""Importing existing contacts: the import against a plain COPY of the same file.

`.venv/bin/python -m bench.intake_import --rows 20000`

A fresh PostgreSQL (the devstack's, fsync on) gets intake's schema and a form. A CSV of N
contacts (email, first and last name, phone, captured_at, locale, time zone, consent with its
time, a UTM source, a custom field) is imported with the service's own code, end to end:
the request's part (`lead_intake.imports.service.import_csv`: the header checked, every row
staged in one transaction) and then the import runner's batches (`run_import`, each row
checked, normalized and captured: lead, submission, data key, search index entries, the sealed
funnel.lead.captured.v2 in the outbox; the next batch made ready while one is written; with
`--serial`, one batch at a time, for a comparison) until the import is done. In the same
run, the same bytes are loaded with `COPY ... FROM STDIN (FORMAT csv, HEADER)` into a plain
table with the same columns (no checks, no events, no index): **ratio = import seconds / COPY
seconds**, and rows/s of both. Each is run `--rounds` times (ABBA order), on a fresh schema
each time. The importing process's own CPU time per row is printed too (rows per CPU second:
what one core of its Python work allows, far less sensitive to a busy machine than rows/s).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, log, migrated_postgres, tree_cpu_seconds, tree_cpu_used
from funnel_devstack.postgres import PostgresServer
from funnel_servicekit import migrations
from funnel_servicekit.db import connect, create_pool
from funnel_servicekit.unit_of_work import Outbox, Transactions
from lead_intake.app import MIGRATIONS
from lead_intake.forms.models import UNLIMITED, FormIn
from lead_intake.forms.service import seed_form
from lead_intake.imports import service
from lead_intake.runtime import IntakeContext
from lead_intake.settings import IntakeSettings

HEADER = (
    "email,first_name,last_name,phone,captured_at,locale,time_zone,consent,consent_at,"
    "utm_source,custom.plan\n"
)
PLAIN = """CREATE TABLE plain_import (email text, first_name text, last_name text, phone text,
    captured_at timestamptz, locale text, time_zone text, consent text, consent_at timestamptz,
    utm_source text, plan text)"""


def contacts(rows: int) -> bytes:
    lines = [HEADER]
    for n in range(rows):
        lines.append(
            f"person{n}@example.com,Anna{n % 97},Berg{n % 89},+4670{n:07d},"
            f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T09:00:00Z,sv-SE,Europe/Stockholm,yes,"
            f"2024-01-01T00:00:00Z,fair-{n % 7},plan-{n % 3}\n"
        )
    return "".join(lines).encode()


async def _fresh(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await migrations.apply(conn, schema, MIGRATIONS)
    finally:
        await conn.close()
    conn = await connect(dsn, schema)  # the service's codecs (json) and search path
    try:
        await seed_form(
            conn,
            "bench",
            FormIn(
                funnel_id="digital-sales",
                name="Bench",
                rate_limit_per_ip=UNLIMITED,
                rate_limit_per_form=UNLIMITED,
            ),
        )
        await conn.execute(PLAIN)
    finally:
        await conn.close()


async def _import(
    server: PostgresServer, schema: str, body: bytes, batch: int, serial: bool
) -> tuple[float, float, float, float]:
    dsn = server.dsn
    settings = IntakeSettings(
        database_url=dsn, db_schema=schema, import_inline_rows=0, import_batch_size=batch,
        import_max_rows=len(body),
    )  # fmt: skip
    pool = await create_pool(dsn, schema, min_size=1, max_size=2)
    runtime: Any = SimpleNamespace(
        pool=pool,
        settings=settings,
        transactions=Transactions(pool, Outbox(schema, "lead-intake")),
        context=IntakeContext.of(settings),
    )
    upload = service.upload_of("bench", "skip", {}, None, "bench")
    try:
        pg_before = tree_cpu_seconds(server.pid or 0)
        started, cpu = time.perf_counter(), time.process_time()
        await service.import_csv(runtime, upload, io.BytesIO(body), hashlib.sha256(body).digest())
        staged = time.perf_counter() - started
        if serial:  # each batch made ready, then written: no overlap (a comparison)
            while await service.import_batch(runtime):
                pass
        else:  # the import runner's way: each batch made ready while the one before is written
            while await service.run_import(runtime):
                pass
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        # Before the pool closes: its backends' CPU goes with them.
        pg_cpu = tree_cpu_used(pg_before, tree_cpu_seconds(server.pid or 0))
        async with pool.acquire() as conn:
            done = await conn.fetchrow("SELECT status, imported, failed FROM imports")
            leads = await conn.fetchval("SELECT count(*) FROM leads")
            events = await conn.fetchval("SELECT count(*) FROM outbox")
    finally:
        await pool.close()
    assert (done["status"], done["failed"]) == ("done", 0), dict(done)
    assert leads == events == done["imported"], (leads, events, dict(done))
    return elapsed, cpu, pg_cpu, staged


async def _copy(server: PostgresServer, schema: str, body: bytes, rows: int) -> tuple[float, float]:
    conn = await asyncpg.connect(server.dsn, server_settings={"search_path": schema})
    try:
        pg_before = tree_cpu_seconds(server.pid or 0)
        started = time.perf_counter()
        await conn.copy_to_table("plain_import", source=io.BytesIO(body), format="csv", header=True)
        elapsed = time.perf_counter() - started
        pg_cpu = tree_cpu_used(pg_before, tree_cpu_seconds(server.pid or 0))
        assert await conn.fetchval("SELECT count(*) FROM plain_import") == rows
    finally:
        await conn.close()
    return elapsed, pg_cpu


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body = contacts(args.rows)
    times: dict[str, list[float]] = {"import": [], "copy": []}
    cpu: list[float] = []
    pg_cpu: dict[str, list[float]] = {"import": [], "copy": []}
    staged: list[float] = []
    load_before = os.getloadavg()
    async with migrated_postgres("intake", MIGRATIONS, name="import") as server:
        order = ["copy", "import", "import", "copy"] * ((args.rounds + 1) // 2)
        for n, which in enumerate(order[: 2 * args.rounds]):
            schema = f"import_bench_{n}"
            await _fresh(server.dsn, schema)
            if which == "import":
                seconds, used, pg_used, staging = await _import(
                    server, schema, body, args.batch, args.serial
                )
                cpu.append(used)
                staged.append(staging)
            else:
                seconds, pg_used = await _copy(server, schema, body, args.rows)
            times[which].append(seconds)
            pg_cpu[which].append(pg_used)
            log(
                f"{which}: {args.rows} rows in {seconds:.2f}s ({args.rows / seconds:,.0f} rows/s)"
                f", PostgreSQL CPU {pg_used:.2f}s, load average {os.getloadavg()[0]:.1f}"
            )
    load_after = os.getloadavg()
    imp, copy = statistics.median(times["import"]), statistics.median(times["copy"])
    py_cpu, pg_import = statistics.median(cpu), statistics.median(pg_cpu["import"])
    return {
        "rows": args.rows,
        "batch": args.batch,
        "pipelined": not args.serial,
        "bytes": len(body),
        "import_s": [round(t, 3) for t in times["import"]],
        "copy_s": [round(t, 3) for t in times["copy"]],
        # Of import_s: the request's part (the file read and every row staged), the rest is
        # the batches.
        "staged_s": [round(t, 3) for t in staged],
        "import_rows_per_s": round(args.rows / imp),
        "copy_rows_per_s": round(args.rows / copy),
        "ratio_import_to_copy_time": round(imp / copy, 1),
        # The importing process's own CPU per row (PostgreSQL's is apart): much less
        # sensitive to a busy machine than rows/s; rows per CPU second is what one core of
        # Python work allows.
        "import_cpu_ms_per_row": round(1000 * py_cpu / args.rows, 3),
        "import_rows_per_cpu_s": round(args.rows / py_cpu),
        # PostgreSQL's own CPU (every backend) per row, for the import and for the COPY; and
        # the rows per second the two CPUs' work allows when nothing else runs (a batch's
        # Python, then its statements: one after the other) ...
        "import_pg_cpu_ms_per_row": round(1000 * pg_import / args.rows, 3),
        "copy_pg_cpu_ms_per_row": round(1000 * statistics.median(pg_cpu["copy"]) / args.rows, 4),
        "cpu_bound_rows_per_s": round(args.rows / (py_cpu + pg_import)),
        # ... and when they overlap wholly (the runner's pipeline makes the next batch ready
        # while PostgreSQL writes one): the larger of the two.
        "overlap_bound_rows_per_s": round(args.rows / max(py_cpu, pg_import)),
        "load_average_1m": [round(load_before[0], 1), round(load_after[0], 1)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Contacts import against a plain COPY.")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="rows per import transaction")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--serial",
        action="store_true",
        help="one batch at a time (made ready, then written), not the runner's pipeline",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"intake-import-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
