"""lead-intake in-process on the real PostgreSQL and Kafka: the app, a client, its outbox.

No tests here: the intake integration modules share this harness. The outbox relay is off, so
every event the service wrote stays readable in its outbox table, in order.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from funnel_contracts import EventData, LeadCapturedV2, LeadUpdatedV2, parse_event
from funnel_contracts.sealed import PersonalData, unseal
from funnel_servicekit.cli import migrate
from lead_intake.app import MIGRATIONS, create_app
from lead_intake.settings import IntakeSettings

ADMIN_KEY = "intake-test-admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
VISITOR_IP = "203.0.113.77"


@dataclass
class Intake:
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    app: Any

    def client_from(self, ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://intake.test")

    async def create_form(self, form_id: str, **definition: Any) -> dict[str, Any]:
        body = {"funnel_id": "digital-sales", "name": form_id.title(), **definition}
        response = await self.client.put(f"/v1/forms/{form_id}", json=body, headers=ADMIN)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    async def events(self, event_type: str | None = None) -> list[EventData]:
        """Every event in the outbox, in the order it would be published, parsed by contract."""
        rows = await self.pool.fetch("SELECT event_type, value FROM outbox ORDER BY id")
        return [
            parse_event(r["event_type"], json.loads(r["value"]))
            for r in rows
            if event_type is None or r["event_type"] == event_type
        ]

    async def person(self, event: LeadCapturedV2 | LeadUpdatedV2) -> PersonalData:
        """The personal data sealed in a lead event, opened with the lead's key (as the
        notifier does); fails when the key is gone or does not open it."""
        key = await self.pool.fetchval(
            "SELECT data_key FROM subject_keys WHERE lead_id = $1", event.lead_id
        )
        assert key is not None, f"no data key for lead {event.lead_id}"
        return unseal(
            event.personal_data, key=key, lead_id=event.lead_id, event_type=event.event_type
        )

    async def count(self, table: str) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608

    async def val(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)


@contextlib.asynccontextmanager
async def running_intake(dsn: str, kafka: str, **settings: Any) -> AsyncIterator[Intake]:
    config = IntakeSettings(
        database_url=dsn,
        kafka_bootstrap_servers=kafka,
        admin_api_key=ADMIN_KEY,
        environment="test",
        **{"run_workers": False, **settings},
    )
    await migrate(config, MIGRATIONS)
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(VISITOR_IP, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as c:
            yield Intake(c, app.state.runtime.pool, app)
