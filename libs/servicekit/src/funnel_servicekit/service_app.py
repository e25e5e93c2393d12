"""The composition root's common part: one FastAPI app around a `ServiceRuntime`.

A process runs its API and its loops (outbox relay, consumers) under the app's lifespan;
FUNNEL_RUN_WORKERS=false leaves the loops off and FUNNEL_RUN_API=false leaves the service's
routes out (health and metrics stay), so that APIs and workers scale apart.
Shutdown drains: loops stop fetching, finish the batch in hand and commit, then close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from funnel_servicekit import health, transaction_guard
from funnel_servicekit.auth import (
    ApiKeyAuth,
    KeyLookup,
    Principal,
    check_route_scopes,
    describe_route_scopes,
)
from funnel_servicekit.db import create_pool
from funnel_servicekit.gc_pauses import freeze_startup_heap, measure_gc_pauses, thaw
from funnel_servicekit.http_metrics import HttpMetricsMiddleware
from funnel_servicekit.http_trace import UnrecordedTraceMiddleware
from funnel_servicekit.kafka import create_producer
from funnel_servicekit.load_shedding import LoadSheddingMiddleware
from funnel_servicekit.outbox import OutboxRelay
from funnel_servicekit.problems import install_problem_handlers
from funnel_servicekit.runtime import (
    AnyRuntime,
    ServiceRuntime,
    Worker,
    WorkerFactory,
    supervise,
)
from funnel_servicekit.settings import ServiceSettings
from funnel_servicekit.telemetry import spans_recorded

log = logging.getLogger(__name__)
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
ContextT = TypeVar("ContextT")


async def _retry(what: str, attempt: Callable[[], Awaitable[Any]], deadline_s: float = 60.0) -> Any:
    """Dependencies may come up after us (Kubernetes starts pods in any order)."""
    deadline = time.monotonic() + deadline_s
    delay = 0.5
    while True:
        try:
            return await attempt()
        except (OSError, asyncpg.PostgresError, KafkaError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s not reachable yet (%s); retrying", what, type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def create_service_app(
    settings: SettingsT,
    *,
    context: ContextT,
    title: str,
    description: str,
    migrations_dir: Path,
    routers: Sequence[APIRouter],
    workers: WorkerFactory | None = None,
    key_lookup: KeyLookup | None = None,
) -> FastAPI:
    """The composition root's common part: one FastAPI app with its runtime and loops."""
    runtime: ServiceRuntime[SettingsT, ContextT] = ServiceRuntime(
        settings=settings, migrations_dir=migrations_dir, context=context
    )

    if settings.transaction_guard:
        transaction_guard.arm()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.pool = await _retry(
            "database",
            lambda: create_pool(
                settings.database_url,
                settings.db_schema,
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
                reset_on_release=settings.db_pool_reset_on_release,
                plan_cache_mode=settings.db_plan_cache_mode,
                random_page_cost=settings.db_random_page_cost,
            ),
        )
        runtime.producer = create_producer(settings.kafka_bootstrap_servers, settings.service_name)
        runtime.producer_factory = lambda: create_producer(
            settings.kafka_bootstrap_servers, f"{settings.service_name}-renewed"
        )
        await _retry("kafka", runtime.producer.start)
        if settings.run_workers:
            relay = OutboxRelay(
                runtime.pool,
                runtime.producer,
                dsn=settings.database_url,
                schema=settings.db_schema,
                batch_size=settings.outbox_batch_size,
                poll_seconds=settings.outbox_poll_seconds,
                listening_poll_seconds=settings.outbox_listening_poll_seconds,
                producer_factory=runtime.producer_factory,
                linger_seconds=settings.outbox_linger_ms / 1000,
                read_interval_seconds=settings.outbox_read_interval_ms / 1000,
            )
            runtime.workers = [Worker("outbox-relay", relay.run, relay.stop)]
            runtime.workers += list(workers(runtime) if workers else [])
            for worker in runtime.workers:
                runtime.tasks[worker.name] = asyncio.create_task(
                    supervise(worker, runtime.stopping), name=worker.name
                )
        # What exists now lives as long as the process: later collections need not walk it.
        frozen = freeze_startup_heap() if settings.gc_freeze_after_startup else 0
        measure_gc_pauses()  # from here on, a pause keeps requests and events waiting
        log.info(
            "service started",
            extra={"workers": [w.name for w in runtime.workers], "gc_frozen_objects": frozen},
        )
        try:
            yield
        finally:
            await _drain(runtime)
            if frozen:
                thaw()

    # FastAPI, with /docs (Swagger UI) and /redoc served from the service's own files, not
    # from a CDN: the API docs work where the browser reaches only the service.
    app = FastAPIOffline(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry bridge is off: the server span is the instrumentation's
        # (or, with nothing recorded, the trace context alone, below), HTTP metrics are the
        # kit's Prometheus ones and logs its JSON lines. On, it made a second span, a metric
        # and a log record per request for providers that record nothing.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.auth = ApiKeyAuth(
        settings.admin_api_key.get_secret_value() if settings.admin_api_key else None,
        key_lookup,
        {k.sha256: Principal(k.name, k.scopes) for k in settings.api_keys},
        admin_sha256=settings.admin_api_key_sha256,
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    # A worker pod (FUNNEL_RUN_API=false) serves only /healthz, /readyz and /metrics: the
    # probes and the scrape still work, but no business traffic can land on it.
    for router in routers if settings.run_api else ():
        app.include_router(router)

    check_route_scopes(app)
    describe_route_scopes(app)
    app.add_middleware(HttpMetricsMiddleware)
    if spans_recorded():
        # One server span per request; the per-message ASGI receive/send spans add cost, not
        # insight.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
        )
    else:
        # No span would be read: the trace context alone, without span objects.
        app.add_middleware(UnrecordedTraceMiddleware)
    if settings.http_max_in_flight:
        # Before routing and the body: a refused request costs little (it still gets a span).
        app.add_middleware(LoadSheddingMiddleware, max_in_flight=settings.http_max_in_flight)
    return app


async def _drain(runtime: AnyRuntime) -> None:
    """Stop loops (they finish their batch and commit), then close the clients."""
    runtime.stopping.set()
    for worker in runtime.workers:
        worker.stop()
    if runtime.tasks:
        _, pending = await asyncio.wait(
            runtime.tasks.values(), timeout=runtime.settings.drain_seconds
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    with contextlib.suppress(Exception):
        await runtime.producer.stop()
    with contextlib.suppress(Exception):
        await runtime.pool.close()
    log.info("service stopped")
