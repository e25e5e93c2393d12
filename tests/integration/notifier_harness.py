"""The notifier on a real PostgreSQL and a real SMTP server, driven event by event.

Events go through the consumer's real batch handler in a transaction (as the inbox consumer
runs a poll's batch; `feed_one_by_one` takes the record-by-record path) and due touches
through the real sender; what the service emits is read from its outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from funnel_contracts import (
    ActivityRecorded,
    Consent,
    Envelope,
    EventData,
    LeadCaptured,
    LeadScored,
    StageChanged,
)
from funnel_devstack.mailbox import MailboxServer
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from funnel_servicekit.inbox import Delivery
from notifier.app import MIGRATIONS, create_app
from notifier.people.worker import ContactResolver
from notifier.settings import NotifierSettings
from notifier.touches.consumer import handle, handle_batch
from notifier.touches.worker import TouchSender

ADMIN_KEY = "notifier-integration-admin-key-0123456789"


def captured(
    lead_id: UUID,
    *,
    email: str | None = None,
    consent: tuple[str, ...] = (),
    locale: str | None = None,
    time_zone: str | None = None,
    first_name: str = "Ada",
) -> LeadCaptured:
    now = datetime.now(UTC)
    return LeadCaptured(
        lead_id=lead_id,
        submission_id=uuid4(),
        form_id="demo",
        funnel_id="digital-sales",
        email=email or f"{lead_id.hex[:10]}@example.com",
        first_name=first_name,
        captured_at=now,
        consent=Consent(text="Yes, email me", categories=consent, given_at=now)
        if consent
        else None,
        locale=locale,
        time_zone=time_zone,
    )


def entered(
    lead_id: UUID, stage: str, position: int, from_stage: str | None = None
) -> StageChanged:
    return StageChanged(
        lead_id=lead_id,
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=from_stage,
        to_stage=stage,
        to_stage_position=position,
        reason="test",
        changed_at=datetime.now(UTC),
    )


def did(lead_id: UUID, activity_type: str, at: datetime | None = None) -> ActivityRecorded:
    at = at or datetime.now(UTC)
    return ActivityRecorded(
        lead_id=lead_id,
        activity_id=uuid4(),
        activity_type=activity_type,
        occurred_at=at,
        recorded_at=at,
    )


def scored(lead_id: UUID, temperature: str, previous: str | None = None) -> LeadScored:
    return LeadScored(
        lead_id=lead_id,
        funnel_id="digital-sales",
        score=90 if temperature == "hot" else 30,
        fit_score=40,
        engagement_score=50,
        temperature=temperature,
        previous_temperature=previous,
        scored_at=datetime.now(UTC),
    )


def a_wave_each(leads: list[UUID], activity_type: str) -> list[EventData]:
    """For each lead in turn: it enters the first stage, does `activity_type`, turns warm."""
    return [
        event
        for lead in leads
        for event in (entered(lead, "awareness", 0), did(lead, activity_type), scored(lead, "warm"))
    ]


@dataclass
class Harness:
    pool: asyncpg.Pool
    settings: NotifierSettings
    mailbox: MailboxServer

    @property
    def sender(self) -> TouchSender:
        return TouchSender(self.pool, self.settings)

    @property
    def resolver(self) -> ContactResolver:
        """The contact resolver (opens v2 events' sealed contacts with keys from intake)."""
        return ContactResolver(self.pool, self.settings)

    async def feed(self, *events: EventData) -> None:
        """The events as one poll batch of the live consumer: one transaction, the batch
        handler (the kit's inbox writes its rows first; here nothing is a duplicate)."""
        deliveries = [Delivery(e.topic, Envelope.of(e, source="test"), e) for e in events]
        async with self.pool.acquire() as conn, conn.transaction():
            await handle_batch(conn, deliveries)

    async def feed_one_by_one(self, *events: EventData) -> None:
        """The events through the record-by-record handler, a transaction each (the kit's
        path for a batch whose handler failed)."""
        for event in events:
            envelope = Envelope.of(event, source="test")
            async with self.pool.acquire() as conn, conn.transaction():
                await handle(conn, envelope, event)

    async def send_due(self) -> int:
        """Run the sender until nothing is due; how many touches it handled."""
        sender, total = self.sender, 0
        async with sender.resources():  # one SMTP connection for all the batches
            while handled := await sender.send_due():
                total += handled
        return total

    async def make_due(self, lead_id: UUID, playbook: str | None = None) -> None:
        """Time passes: the lead's scheduled touches (of one playbook) fall due now."""
        await self.pool.execute(
            "UPDATE touches SET due_at = now() - interval '1 second'"
            " WHERE lead_id = $1 AND status = 'scheduled' AND ($2::text IS NULL OR playbook = $2)",
            lead_id,
            playbook,
        )

    async def touches(self, lead_id: UUID) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM touches WHERE lead_id = $1 ORDER BY created_at, playbook", lead_id
        )
        return [dict(r) for r in rows]

    async def status(self, lead_id: UUID) -> dict[str, tuple[str, str | None]]:
        return {t["playbook"]: (t["status"], t["reason"]) for t in await self.touches(lead_id)}

    async def emitted(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Events in the outbox (the relay is not running here), oldest first."""
        rows = await self.pool.fetch("SELECT value, headers, event_type FROM outbox ORDER BY id")
        found = []
        for row in rows:
            if event_type is None or row["event_type"] == event_type:
                data = json.loads(row["value"])
                data["_headers"] = dict(row["headers"])
                data["_type"] = row["event_type"]
                found.append(data)
        return found

    def mail_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mailbox.messages() if str(m["To"]).lower() == address.lower()]

    @contextlib.asynccontextmanager
    async def api(self) -> AsyncIterator[httpx.AsyncClient]:
        """The notifier's HTTP API in-process (loops off: the test drives them)."""
        settings = self.settings.model_copy(update={"run_workers": False})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://notifier.test",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ) as client:
                yield client


@contextlib.asynccontextmanager
async def notifier_harness(
    dsn: str, kafka_bootstrap: str, **settings: Any
) -> AsyncIterator[Harness]:
    """Migrations on a fresh database, a pool, and an SMTP server in this process."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, "notifier", MIGRATIONS)
    finally:
        await conn.close()
    mail_dir = Path(tempfile.mkdtemp(prefix="notifier-mail-"))
    mailbox = MailboxServer(mail_dir)
    mailbox.start()
    values: dict[str, Any] = {
        "database_url": dsn,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "smtp_port": mailbox.port,
        "admin_api_key": ADMIN_KEY,
        "public_base_url": "https://notifier.test",
        "quiet_hours_start": None,
        "quiet_hours_end": None,
        "retry_base_seconds": 0.01,
        **settings,
    }
    pool = await create_pool(dsn, "notifier", min_size=1, max_size=8)
    try:
        yield Harness(pool, NotifierSettings(**values), mailbox)
    finally:
        await pool.close()
        mailbox.stop()
        shutil.rmtree(mail_dir, ignore_errors=True)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records each request and answers from a script."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(path, headers, body))
            status, extra = self.script.pop(0) if self.script else (200, {})
            out = [f"HTTP/1.1 {status} X", "Content-Length: 0", "Connection: close"]
            out += [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode())
            await writer.drain()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[WebhookReceiver]:
    """A started WebhookReceiver, stopped afterwards (the body of every receiver fixture)."""
    server = WebhookReceiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
