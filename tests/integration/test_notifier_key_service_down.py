"""lead-intake (the data-key service) away does not stall the notifier's event path.

The consumer records a v2 lead event's sealed personal data without a network call; the
contact resolver fetches the key later, with no transaction open. While the key service is
unreachable, lead and stage events are still consumed (the group's committed offsets reach
the end of the topics) and the touches they call for are scheduled; they wait for the
contact, and go once the key service answers. Erasure still wins over a waiting contact.

The key service is a real HTTP server on loopback, started late (connection refused until
then); Kafka and PostgreSQL are real.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from funnel_contracts import (
    Consent,
    Envelope,
    EventData,
    LeadCapturedV2,
    LeadErased,
    LeadMerged,
    encode,
)
from funnel_contracts.examples import lead_captured, lead_captured_v2
from funnel_contracts.sealed import PersonalData, key_to_text, new_data_key
from funnel_contracts.topics import LEAD_EVENTS, STAGE_EVENTS
from funnel_devstack.ports import free_port
from funnel_devstack.stack import Stack
from tests.integration.kit_support import end_offsets, eventually, kafka_admin
from tests.integration.notifier_harness import Harness, entered, notifier_harness

pytestmark = pytest.mark.integration
API_KEY = "fk_notifier-integration"


class KeyService:
    """lead-intake's key calls on 127.0.0.1 (`POST /v1/data-keys/lookup`, and
    `GET /v1/leads/{id}/data-key`): down until `start()`. A lead without a key is erased."""

    def __init__(self) -> None:
        self.port = free_port()
        self.keys: dict[UUID, bytes] = {}
        self.asked: list[tuple[str, str, str]] = []  # (path, authorization, a lead asked)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in head[1:] if line)
            }
            sent = await reader.readexactly(int(headers.get("content-length", "0")))
            auth = headers.get("authorization", "")
            if path == "/v1/data-keys/lookup":
                asked = [UUID(i) for i in json.loads(sent)["lead_ids"]]
                self.asked += [(path, auth, str(lead)) for lead in asked]
                status = "200 OK"
                body = json.dumps(
                    {
                        "keys": [
                            {"lead_id": str(i), "key": key_to_text(self.keys[i])}
                            for i in asked
                            if i in self.keys
                        ],
                        "erased": [str(i) for i in asked if i not in self.keys],
                        "unknown": [],
                    }
                )
            else:
                lead = UUID(path.split("/")[3])
                self.asked.append((path, auth, str(lead)))
                if lead in self.keys:
                    status = "200 OK"
                    body = json.dumps({"lead_id": str(lead), "key": key_to_text(self.keys[lead])})
                else:
                    status, body = "410 Gone", json.dumps({"title": "erased"})
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
            )
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def keys() -> AsyncIterator[KeyService]:
    service = KeyService()
    try:
        yield service
    finally:
        await service.stop()


def _settings(keys: KeyService) -> dict[str, Any]:
    return {
        "intake_url": keys.url,
        "intake_api_key": API_KEY,
        "intake_timeout_seconds": 1.0,
        "scheduler_poll_seconds": 0.2,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.0,
    }


def captured_v2(lead_id: UUID, key: bytes, email: str) -> LeadCapturedV2:
    now = datetime.now(UTC)
    return lead_captured_v2(
        PersonalData(email=email, first_name="Ada"),
        key=key,
        lead_id=lead_id,
        consent=Consent(text="Yes, email me", categories=("marketing",), given_at=now),
        locale="sv-SE",
    )


async def _publish(bootstrap: str, *events: EventData) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            record = encode(Envelope.of(event, source="test"))
            await producer.send_and_wait(
                event.topic, record.value, key=record.key, headers=record.headers
            )
    finally:
        await producer.stop()


async def _lag(bootstrap: str, group: str, topics: tuple[str, ...]) -> dict[str, int]:
    """Records per topic the group has not committed yet (0 everywhere: all consumed)."""
    try:
        async with kafka_admin(bootstrap) as admin:
            committed = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # the group's coordinator is not elected yet on a fresh broker
        return {}
    done = {(tp.topic, tp.partition): max(m.offset, 0) for tp, m in committed.items()}
    lag: dict[str, int] = {}
    for topic in topics:
        for partition, end in (await end_offsets(bootstrap, topic)).items():
            lag[topic] = lag.get(topic, 0) + end - done.get((topic, partition), 0)
    return lag


async def _count(h: Harness, table: str, lead: UUID) -> int:
    return int(await h.pool.fetchval(f"SELECT count(*) FROM {table} WHERE lead_id = $1", lead))  # noqa: S608


async def test_lead_events_flow_while_the_key_service_is_down_and_the_touch_goes_after(
    module_infra: Stack, keys: KeyService
) -> None:
    bootstrap = module_infra.kafka_bootstrap
    dsn = await module_infra.postgres.create_database("n")
    async with notifier_harness(dsn, bootstrap, **_settings(keys)) as h:
        from notifier.app import create_app

        lead, key = uuid4(), new_data_key()
        email = f"{lead.hex[:10]}@example.com"
        keys.keys[lead] = key
        await _publish(bootstrap, captured_v2(lead, key, email), entered(lead, "awareness", 0))
        app = create_app(h.settings)
        async with app.router.lifespan_context(app):
            # The key service refuses connections: both events are consumed all the same.
            await eventually(
                lambda: _lag(bootstrap, h.settings.service_name, (LEAD_EVENTS, STAGE_EVENTS)),
                lambda lag: lag == {LEAD_EVENTS: 0, STAGE_EVENTS: 0},
                timeout=60,
                what="the notifier's committed offsets at the end of both topics",
            )
            await eventually(
                lambda: h.status(lead),
                lambda got: got.get("welcome", ("",))[0] == "scheduled",
                what="the welcome scheduled",
            )
            consent = await h.pool.fetchval(
                "SELECT granted FROM consents WHERE lead_id = $1 AND category = 'marketing'", lead
            )
            assert consent is True  # recorded from the event, no key needed
            # The resolver keeps trying (and failing); the touch waits for its contact.
            await eventually(
                lambda: h.pool.fetchval(
                    "SELECT attempts FROM pending_contacts WHERE lead_id = $1", lead
                ),
                lambda attempts: attempts is not None and attempts >= 2,
                what="the contact resolver retrying",
            )
            last_error = await h.pool.fetchval(
                "SELECT last_error FROM pending_contacts WHERE lead_id = $1", lead
            )
            assert "unreachable" in last_error
            assert await _count(h, "contacts", lead) == 0
            assert (await h.status(lead))["welcome"] == ("scheduled", None)
            assert h.mail_to(email) == []

            await keys.start()  # lead-intake is back
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not h.mail_to(email):
                await asyncio.sleep(0.1)
            [mail] = h.mail_to(email)
            await eventually(
                lambda: h.status(lead),
                lambda got: got.get("welcome") == ("sent", None),
                what="the welcome recorded sent",
            )
        assert mail["Content-Language"] == "sv"  # the event's locale came with the contact
        assert await _count(h, "pending_contacts", lead) == 0
        contact = await h.pool.fetchrow(
            "SELECT email, first_name, locale FROM contacts WHERE lead_id = $1", lead
        )
        assert dict(contact) == {"email": email, "first_name": "Ada", "locale": "sv-SE"}
        # The contact resolver asked for the batch's keys in one call.
        assert ("/v1/data-keys/lookup", f"Bearer {API_KEY}", str(lead)) in keys.asked


async def test_a_lead_erased_before_its_contact_is_resolved_keeps_nothing(
    fresh_dsn: str, infra: Stack, keys: KeyService
) -> None:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(keys)) as h:
        erased, kept, key = uuid4(), uuid4(), new_data_key()
        keys.keys[erased] = keys.keys[kept] = key
        for lead in (erased, kept):
            await h.feed(
                captured_v2(lead, key, f"{lead.hex[:10]}@example.com"),
                entered(lead, "awareness", 0),
            )
        resolver = h.resolver
        assert await resolver.resolve_waiting() == 2  # tried: the key service is down
        assert await h.pool.fetchval("SELECT count(*) FROM contacts") == 0
        assert await h.send_due() == 0  # the welcomes wait for their contacts

        await h.feed(LeadErased(lead_id=erased, request_id=uuid4(), erased_at=datetime.now(UTC)))
        await keys.start()
        await h.pool.execute("UPDATE pending_contacts SET next_try_at = now()")
        assert await resolver.resolve_waiting() == 1  # only the kept lead's row is left

        assert await _count(h, "contacts", erased) == 0
        assert await _count(h, "pending_contacts", erased) == 0
        assert (await h.status(erased))["welcome"] == ("cancelled", "erased")
        assert await _count(h, "contacts", kept) == 1
        assert await h.send_due() == 1
        assert len(h.mail_to(f"{kept.hex[:10]}@example.com")) == 1
        assert h.mail_to(f"{erased.hex[:10]}@example.com") == []


async def test_a_contact_resolved_after_the_erasure_committed_is_not_stored(
    fresh_dsn: str, infra: Stack, keys: KeyService
) -> None:
    """The key was fetched before the erasure, the contact is stored after: erasure wins."""
    from notifier.people import service
    from notifier.people.store import claim_pending

    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(keys)) as h:
        lead, key = uuid4(), new_data_key()
        keys.keys[lead] = key
        await h.feed(captured_v2(lead, key, "late@example.com"))
        await keys.start()
        async with h.pool.acquire() as conn:
            [pending] = await claim_pending(conn, 10, 60)
        resolver = h.resolver
        async with resolver.resources():
            assert resolver.keys is not None
            person = await service.open_contact(pending, resolver.keys)
        assert person is not None
        assert person.email == "late@example.com"
        await h.feed(LeadErased(lead_id=lead, request_id=uuid4(), erased_at=datetime.now(UTC)))
        stored = await resolver.tx.run(lambda uow: service.store_contact(uow, pending, person))
        assert stored is False
        assert await _count(h, "contacts", lead) == 0


async def _scheduled(h: Harness) -> int:
    return int(await h.pool.fetchval("SELECT count(*) FROM touches WHERE status = 'scheduled'"))


UNREACHABLE = ("suppressed", "no contact details (erased or never captured)")


async def test_a_lead_intake_has_no_key_for_has_its_touches_suppressed_not_left_waiting(
    fresh_dsn: str, infra: Stack, keys: KeyService
) -> None:
    """lead-intake knows no key for the lead (erased there, its erasure not here yet): the
    touch is suppressed as unreachable, not left scheduled for every claim to pass over."""
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(keys)) as h:
        gone, kept, key = uuid4(), uuid4(), new_data_key()
        keys.keys[kept] = key  # none for `gone`
        for lead in (gone, kept):
            await h.feed(
                captured_v2(lead, key, f"{lead.hex[:10]}@example.com"),
                entered(lead, "awareness", 0),
            )
        await keys.start()
        assert await h.resolver.resolve_waiting() == 2
        assert await h.pool.fetchval("SELECT count(*) FROM pending_contacts") == 0
        contact = await h.pool.fetchrow(
            "SELECT email, first_name FROM contacts WHERE lead_id = $1", gone
        )
        assert dict(contact) == {"email": "", "first_name": None}  # known: no address

        assert await h.send_due() == 2
        assert (await h.status(gone))["welcome"] == UNREACHABLE
        assert (await h.status(kept))["welcome"] == ("sent", None)
        assert await _scheduled(h) == 0
        assert h.mail_to(f"{gone.hex[:10]}@example.com") == []

        # Merged with a person whose address is known: the survivor takes it.
        other = uuid4()
        keys.keys[other] = key
        await h.feed(captured_v2(other, key, "found@example.com"))
        assert await h.resolver.resolve_waiting() == 1
        await h.feed(
            LeadMerged(
                lead_id=gone, merged_lead_id=other, reason="manual", merged_at=datetime.now(UTC)
            )
        )
        assert await h.pool.fetchval(
            "SELECT email FROM contacts WHERE lead_id = $1", gone
        ) == "found@example.com"  # fmt: skip

        # A person whose contact is known keeps it as it is when intake has no key.
        known = uuid4()
        await h.feed(lead_captured(lead_id=known, email="known@example.com"))
        before = await h.pool.fetchrow("SELECT * FROM contacts WHERE lead_id = $1", known)
        await h.feed(captured_v2(known, key, "other@example.com"))  # sv-SE, no key for it
        assert await h.resolver.resolve_waiting() == 1
        after = await h.pool.fetchrow("SELECT * FROM contacts WHERE lead_id = $1", known)
        assert dict(after) == dict(before)

        # A survivor whose own contact still waits takes no empty address from the other.
        nobody, waits = uuid4(), uuid4()
        keys.keys[waits] = key
        await h.feed(captured_v2(nobody, key, "nobody@example.com"))
        assert await h.resolver.resolve_waiting() == 1  # no key for `nobody`: no address
        await h.feed(
            captured_v2(waits, key, "waits@example.com"),
            LeadMerged(
                lead_id=waits, merged_lead_id=nobody, reason="manual", merged_at=datetime.now(UTC)
            ),
        )
        assert await _count(h, "contacts", waits) == 0
        assert await h.resolver.resolve_waiting() == 1
        assert await h.pool.fetchval(
            "SELECT email FROM contacts WHERE lead_id = $1", waits
        ) == "waits@example.com"  # fmt: skip


async def test_sealed_data_that_never_opens_is_parked_without_holding_back_later_rows(
    fresh_dsn: str, infra: Stack, keys: KeyService
) -> None:
    """A row sealed with another key is parked for a look. The lead's later row still opens
    and its touch goes; a lead with nothing else waiting has its touch suppressed."""
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(keys)) as h:
        later, only = uuid4(), uuid4()
        key, other = new_data_key(), new_data_key()
        keys.keys[later] = keys.keys[only] = key
        await h.feed(
            captured_v2(later, other, "wrong-key@example.com"),  # never opens
            captured_v2(only, other, "wrong-key-too@example.com"),
            entered(later, "awareness", 0),
            entered(only, "awareness", 0),
        )
        await h.feed(captured_v2(later, key, "right-key@example.com"))
        await keys.start()
        resolver = h.resolver
        assert await resolver.resolve_waiting() == 2  # each lead's first row: both parked
        parked = await h.pool.fetch(
            "SELECT lead_id, last_error FROM pending_contacts WHERE next_try_at = 'infinity'"
        )
        assert sorted(str(r["lead_id"]) for r in parked) == sorted([str(later), str(only)])
        assert all(r["last_error"].startswith("seal: ") for r in parked)
        # `later` has a row still waiting: no contact yet, its welcome waits for it.
        assert await _count(h, "contacts", later) == 0
        assert await h.pool.fetchval(
            "SELECT email FROM contacts WHERE lead_id = $1", only
        ) == ""  # fmt: skip

        assert await resolver.resolve_waiting() == 1  # the later row, not held back
        assert await h.pool.fetchval(
            "SELECT email FROM contacts WHERE lead_id = $1", later
        ) == "right-key@example.com"  # fmt: skip
        assert await h.send_due() == 2
        assert (await h.status(later))["welcome"] == ("sent", None)
        assert (await h.status(only))["welcome"] == UNREACHABLE
        assert len(h.mail_to("right-key@example.com")) == 1
        assert await _scheduled(h) == 0
        assert await resolver.resolve_waiting() == 0  # parked rows are never tried again


async def test_people_an_earlier_version_left_waiting_for_good_are_closed_by_migration_0011(
    fresh_dsn: str, infra: Stack, keys: KeyService
) -> None:
    """Migration 0011 gives the people earlier versions left with touches scheduled for good
    (their sealed data parked, or dropped on intake's "no key") a contact with no address,
    so their touches are suppressed. A person whose contact may still come (a row waiting,
    or touches younger than a day) and an erased person are left as they are."""
    from notifier.app import MIGRATIONS

    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **_settings(keys)) as h:
        dropped, parked, waiting, recent = uuid4(), uuid4(), uuid4(), uuid4()
        key = new_data_key()
        for lead in (dropped, parked, waiting, recent):
            await h.feed(
                captured_v2(lead, key, f"{lead.hex[:10]}@example.com"),
                entered(lead, "awareness", 0),
            )
        # What earlier versions left: `dropped`'s row deleted, `parked`'s row parked.
        await h.pool.execute("DELETE FROM pending_contacts WHERE lead_id = $1", dropped)
        await h.pool.execute(
            "UPDATE pending_contacts SET next_try_at = 'infinity' WHERE lead_id = $1", parked
        )
        await h.pool.execute("DELETE FROM pending_contacts WHERE lead_id = $1", recent)
        await h.pool.execute(
            "UPDATE touches SET created_at = now() - interval '2 days' WHERE lead_id <> $1",
            recent,
        )
        assert await h.send_due() == 0  # nobody's welcome can go: no contact anywhere

        sql = (MIGRATIONS / "0011_unreachable_people.sql").read_text()
        await h.pool.execute(sql)  # as `migrate` ran it on the version before

        emails = dict(await h.pool.fetch("SELECT lead_id, email FROM contacts"))
        assert emails == {dropped: "", parked: ""}
        assert await h.send_due() == 2
        assert (await h.status(dropped))["welcome"] == UNREACHABLE
        assert (await h.status(parked))["welcome"] == UNREACHABLE
        for lead in (waiting, recent):
            assert (await h.status(lead))["welcome"] == ("scheduled", None)
        await h.pool.execute(sql)  # a second run changes nothing
        assert await h.pool.fetchval("SELECT count(*) FROM contacts") == 2
