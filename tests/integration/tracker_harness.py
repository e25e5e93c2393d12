"""stage-tracker on a real PostgreSQL, driven event by event, and its API in-process.

Events go through the real handler in a transaction (as the inbox consumer runs it); what the
service emits is read from its outbox (no relay runs here).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from funnel_contracts import ActivityRecorded, Envelope, EventData, LeadCaptured, parse_event
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from stage_tracker.app import MIGRATIONS, create_app
from stage_tracker.consumer import EventHandler
from stage_tracker.funnel_registry import FunnelRegistry
from stage_tracker.settings import TrackerSettings

ADMIN_KEY = "tracker-integration-admin-key-0123456789"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def captured(
    lead_id: UUID, funnel_id: str = "digital-sales", at: datetime = T0, **answers: str
) -> LeadCaptured:
    return LeadCaptured(
        lead_id=lead_id,
        submission_id=uuid4(),
        form_id="demo",
        funnel_id=funnel_id,
        email=f"{lead_id.hex[:10]}@example.com",
        captured_at=at,
        qualification=answers,
    )


def activity(lead_id: UUID, kind: str, at: datetime, **properties: Any) -> ActivityRecorded:
    return ActivityRecorded(
        lead_id=lead_id,
        activity_id=uuid4(),
        activity_type=kind,
        occurred_at=at,
        recorded_at=at,
        properties=properties,
    )


@dataclass
class Harness:
    pool: asyncpg.Pool
    settings: TrackerSettings
    registry: FunnelRegistry = field(default_factory=FunnelRegistry)

    async def feed(self, *events: EventData | Envelope) -> None:
        handler = EventHandler(self.registry, "tracker", "stage-tracker")
        for item in events:
            envelope = item if isinstance(item, Envelope) else Envelope.of(item, source="test")
            event = item if not isinstance(item, Envelope) else None
            async with self.pool.acquire() as conn, conn.transaction():
                await handler(conn, envelope, event or parse_event(envelope.type, envelope.data))

    async def emitted(self, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch("SELECT value, event_type FROM outbox ORDER BY id")
        return [json.loads(r["value"]) for r in rows if event_type in (None, r["event_type"])]

    async def count(self, table: str, lead_id: UUID) -> int:
        query = f"SELECT count(*) FROM {table} WHERE lead_id = $1"  # noqa: S608 - test tables
        return int(await self.pool.fetchval(query, lead_id))

    @contextlib.asynccontextmanager
    async def api(self, key: str = ADMIN_KEY) -> AsyncIterator[httpx.AsyncClient]:
        """The tracker's HTTP API in-process (loops off: the test drives them)."""
        app = create_app(self.settings.model_copy(update={"run_workers": False}))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://tracker.test",
                headers={"Authorization": f"Bearer {key}"} if key else {},
            ) as client,
        ):
            yield client


async def migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, "tracker", MIGRATIONS)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def tracker_harness(
    dsn: str, kafka_bootstrap: str, **settings: Any
) -> AsyncIterator[Harness]:
    await migrate(dsn)
    values: dict[str, Any] = {
        "database_url": dsn,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "admin_api_key": ADMIN_KEY,
        **settings,
    }
    pool = await create_pool(dsn, "tracker", min_size=1, max_size=6)
    try:
        yield Harness(pool, TrackerSettings(**values))
    finally:
        await pool.close()
