"""The durable throughput baseline: the bare app plus one INSERT and its COMMIT per request.

The same endpoint as `baseline_app.py` (the form path, a small JSON body parsed into a pydantic
model, 202 with a JSON body), but each post is written to PostgreSQL before it is answered:
one asyncpg statement outside any explicit transaction, so PostgreSQL commits it on its own
(one round trip, one commit and its WAL flush per request). It uses the same database as
lead-intake (its own schema, `bench_naive`), a pool of lead-intake's default size, and the same
`uvicorn.run` arguments as `funnel_servicekit.cli serve`. It is the minimal durable endpoint:
no validation beyond the model, no dedupe, no outbox, no group commit of its own.

`python bench/naive_durable_app.py --port N --dsn postgresql://...`
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Request

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline_app import Accepted, Submission, serve, server_arguments

SCHEMA = "bench_naive"
POOL_MIN, POOL_MAX = 2, 10  # lead-intake's defaults (FUNNEL_DB_POOL_MIN_SIZE / _MAX_SIZE)


def create_app(dsn: str) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                f"""CREATE SCHEMA IF NOT EXISTS {SCHEMA};
                    CREATE TABLE IF NOT EXISTS {SCHEMA}.leads (
                        id uuid PRIMARY KEY, email text NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now())"""
            )
        finally:
            await conn.close()
        app.state.pool = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="bench-naive-durable", lifespan=lifespan)

    @app.post("/v1/forms/{form_id}/submissions", status_code=202)
    async def submit(form_id: str, body: Submission, request: Request) -> Accepted:
        lead_id = uuid.uuid4()
        pool: asyncpg.Pool = request.app.state.pool
        await pool.execute(
            f"INSERT INTO {SCHEMA}.leads (id, email) VALUES ($1, $2)",  # noqa: S608
            lead_id,
            body.email,
        )
        return Accepted(lead_id=str(lead_id))

    @app.get("/readyz")
    async def readyz(request: Request) -> dict[str, str]:
        await request.app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    return app


def main() -> None:
    parser = server_arguments()
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()
    serve(create_app(args.dsn), args)


if __name__ == "__main__":
    main()
