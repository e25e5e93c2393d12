"""/healthz (the process lives), /readyz (database, migrations, broker, workers), /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from funnel_servicekit import migrations
from funnel_servicekit.deps import runtime_of
from funnel_servicekit.kafka import broker_reachable

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: database reachable, migrations applied, broker reachable, loops up."""
    runtime = runtime_of(request)
    checks: dict[str, Any] = {}
    try:
        async with runtime.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            missing = await migrations.pending(
                conn, runtime.settings.db_schema, runtime.migrations_dir
            )
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not missing else f"pending: {', '.join(missing)}"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["kafka"] = "ok" if await broker_reachable(runtime.producer) else "unreachable"
    dead = runtime.dead_workers()
    checks["workers"] = "ok" if not dead else f"stopped: {', '.join(dead)}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
