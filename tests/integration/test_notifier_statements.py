"""What the notifier asks PostgreSQL per poll, per claim and per resolved contact, counted at
the client on the real database (every statement asyncpg sends, BEGIN and COMMIT included),
and that the playbooks it keeps in memory follow every change (docs/decisions/0073).

- A poll reads the playbooks only when their revision moved (the revision comes with the
  poll's erased-and-test read); a playbook saved, switched off or deleted is seen by the
  next lead.
- The sender's claim tells the revision and the next due time in its one statement: no
  playbooks read, no next-due query, and the send-time facts in one statement.
- The contact resolver takes its rows and stores what it opened in one statement each,
  with no transaction around either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from funnel_contracts import Envelope, EventData, LeadErased
from funnel_contracts.sealed import new_data_key
from funnel_devstack.stack import Stack
from funnel_servicekit.db import create_pool
from funnel_servicekit.inbox import Delivery
from notifier.people.worker import ContactResolver
from notifier.playbooks import store as playbook_store
from notifier.playbooks.catalog import default_playbooks
from notifier.playbooks.service import PlaybookCache
from notifier.touches import consumer
from notifier.touches.consumer import handle_batch
from notifier.touches.worker import TouchSender
from tests.integration.notifier_harness import (
    Harness,
    a_wave_each,
    captured,
    entered,
    notifier_harness,
)
from tests.integration.test_notifier_key_service_down import KeyService, captured_v2

pytestmark = pytest.mark.integration


INTROSPECTION = (
    "SELECT current_setting('jit')",
    "SELECT set_config('jit'",
    "WITH RECURSIVE typeinfo_tree",
)


class Counted:
    """A one-connection pool whose every statement is recorded (asyncpg's query logger)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements: list[str] = []
        self._on = False

    def _log(self, record: Any) -> None:
        query = " ".join(record.query.split()).rstrip(";")
        # asyncpg's own look-up of a type it meets first on a new connection (once each).
        if self._on and not query.startswith(INTROSPECTION):
            self.statements.append(query)

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.statements = []
        self._on = True
        try:
            yield self.statements
        finally:
            self._on = False


@asynccontextmanager
async def counted_pool(h: Harness) -> AsyncIterator[Counted]:
    pool = await create_pool(h.settings.database_url, "notifier", min_size=1, max_size=1)
    counted = Counted(pool)
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(counted._log)
        yield counted
    finally:
        await pool.close()


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap) as harness:
        yield harness


def _deliveries(*events: EventData) -> list[Delivery]:
    return [Delivery(e.topic, Envelope.of(e, source="test"), e) for e in events]


async def _poll(pool: asyncpg.Pool, cache: PlaybookCache, *events: EventData) -> None:
    """One poll through the live consumer's batch handler, with its playbook cache."""
    async with pool.acquire() as conn, conn.transaction():
        await handle_batch(conn, _deliveries(*events), playbooks=cache, wake_within=6.0)


def _new_lead() -> tuple[UUID, list[EventData]]:
    lead = uuid4()
    return lead, [captured(lead), entered(lead, "awareness", 0)]


async def _save(h: Harness, name: str, **changes: Any) -> None:
    book = default_playbooks()[name].model_copy(update=changes)
    async with h.pool.acquire() as conn, conn.transaction():
        await playbook_store.save(conn, book, "test")


def _reads_playbooks(statements: list[str]) -> int:
    return sum("FROM playbooks" in s and "playbooks_revision r" in s for s in statements)


async def test_a_playbook_change_is_seen_by_the_next_lead_and_read_once(h: Harness) -> None:
    cache = PlaybookCache()
    first, events = _new_lead()
    await _poll(h.pool, cache, *events)
    assert (await h.status(first))["welcome"][0] == "scheduled"
    assert cache.reads == 1

    second, events = _new_lead()
    await _poll(h.pool, cache, *events)
    assert (await h.status(second))["welcome"][0] == "scheduled"
    assert cache.reads == 1  # nothing changed: not read again

    await _save(h, "welcome", enabled=False)
    off, events = _new_lead()
    await _poll(h.pool, cache, *events)
    assert "welcome" not in await h.status(off)  # the switch is seen by the next lead
    assert cache.reads == 2

    await _save(h, "welcome", enabled=False)  # saved again: a new version, read again
    again, events = _new_lead()
    await _poll(h.pool, cache, *events)
    assert "welcome" not in await h.status(again)
    assert cache.reads == 3

    assert await playbook_store.delete(h.pool, "welcome")  # the shipped one comes back
    back, events = _new_lead()
    await _poll(h.pool, cache, *events)
    assert (await h.status(back))["welcome"][0] == "scheduled"
    assert cache.reads == 4


async def test_the_sender_sees_a_playbook_switched_off_after_it_kept_them(h: Harness) -> None:
    sender = TouchSender(h.pool, h.settings)
    sent, events = _new_lead()
    await h.feed(*events)
    _, events = _new_lead()
    await h.feed(*events)
    async with sender.resources():
        assert await sender.send_due() == 2  # both welcomes went; the playbooks are kept
        assert sender.playbooks.reads == 1
        later, events = _new_lead()
        await h.feed(*events)
        await _save(h, "welcome", enabled=False)
        await h.make_due(later)
        assert await sender.send_due() == 1
        assert sender.playbooks.reads == 2
    assert (await h.status(sent))["welcome"] == ("sent", None)
    assert (await h.status(later))["welcome"] == ("suppressed", "playbook disabled or removed")
    assert len(h.mail_to(f"{later.hex[:10]}@example.com")) == 0


async def test_a_poll_asks_once_for_its_leads_and_the_playbooks_revision(h: Harness) -> None:
    cache = PlaybookCache()
    async with counted_pool(h) as counted:
        _, warm = _new_lead()
        await _poll(counted.pool, cache, *warm)  # the first poll reads the playbooks
        leads = [_new_lead() for _ in range(3)]
        with counted.counting() as statements:
            await _poll(counted.pool, cache, *(e for _, lead_events in leads for e in lead_events))
    assert _reads_playbooks(statements) == 0
    assert sum("FROM erased_leads" in s for s in statements) == 1
    assert sum("pg_notify" in s for s in statements) == 1  # one wake-up for the poll
    # BEGIN; a plan per call for the poll (decision 0090); the leads' facts and the
    # playbooks' revision; per lead its contact, and its stage with the touches it cancels
    # and the ones it schedules (one statement); the sender's wake-up; COMMIT.
    assert len(statements) == 1 + 1 + 1 + 3 * 2 + 1 + 1, statements
    fused = [s for s in statements if s.startswith("WITH moved AS") and "INTO touches" in s]
    assert len(fused) == 3


async def test_a_polls_stage_changes_activities_and_scores_take_a_statement_each_per_wave(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no span recorded, a poll's events go in waves (each lead's next event): a wave's
    stage changes, activities and scores are one statement each, however many leads it
    holds, and the touches they write are the same as one by one (test_notifier_batch_handler)."""
    monkeypatch.setattr(consumer, "spans_recorded", lambda: False)
    cache = PlaybookCache()

    async def poll_of(n: int) -> tuple[list[str], list[UUID]]:
        leads = [uuid4() for _ in range(n)]
        async with counted_pool(h) as counted:
            await _poll(counted.pool, cache, *(captured(lead) for lead in leads))
            with counted.counting() as statements:
                await _poll(counted.pool, cache, *a_wave_each(leads, "page_view"))
        return statements, leads

    three, _ = await poll_of(3)
    six, leads = await poll_of(6)
    for statements in (three, six):
        assert sum(s.startswith("WITH moved AS") for s in statements) == 1, statements
        assert sum("INTO lead_activities" in s for s in statements) == 1, statements
        assert sum("INTO lead_state (lead_id, temperature" in s for s in statements) == 1
    # BEGIN; a plan per call; the leads' facts; the three waves' statements; the sender's
    # wake-up; COMMIT.
    assert len(three) == len(six) == 1 + 1 + 1 + 3 + 1 + 1, six
    rows = await h.pool.fetch(
        "SELECT lead_id, stage, temperature FROM lead_state WHERE lead_id = ANY($1)", leads
    )
    assert sorted((r["stage"], r["temperature"]) for r in rows) == [("awareness", "warm")] * 6
    welcomes = await h.pool.fetchval(
        "SELECT count(*) FROM touches WHERE lead_id = ANY($1) AND playbook = 'welcome'", leads
    )
    assert welcomes == 6


async def test_a_claim_is_few_statements_and_the_sleep_after_it_none(h: Harness) -> None:
    _, events = _new_lead()
    await h.feed(*events)
    async with counted_pool(h) as counted:
        sender = TouchSender(counted.pool, h.settings)
        async with sender.resources():
            assert await sender.send_due() == 1  # warm: the playbooks read once
            later = [_new_lead() for _ in range(3)]
            await h.feed(*(e for _, events in later for e in events))
            with counted.counting() as statements:
                assert await sender.send_due() == 3
                idle = await sender.idle_seconds()
            with counted.counting() as empty:
                assert await sender.send_due() == 0
                await sender.idle_seconds()
    for lead, _ in later:
        assert (await h.status(lead))["welcome"] == ("sent", None)
    assert len(await h.emitted("funnel.touch.sent.v1")) == 1 + 3
    assert _reads_playbooks(statements) == 0
    assert not any("extract(epoch FROM t.due_at - now()) FROM touches t WHERE" in s[:80]
                   for s in statements)  # fmt: skip
    # Three touches. The claim: BEGIN, the due touches (with the next due time and the
    # playbooks' revision), the leads' locks, their send-time facts, the lease, COMMIT; the
    # record: BEGIN, the touches marked sent, their touch.sent events, COMMIT; the sleep:
    # nothing.
    assert len(statements) == 6 + 4, statements
    assert empty == ["BEGIN", empty[1], "COMMIT"]
    # The sleep ends at the next due touch (the other scheduled ones are days away).
    assert 0 < idle <= sender.poll_interval


async def test_resolving_contacts_is_one_statement_to_take_and_one_to_store(
    fresh_dsn: str, infra: Stack
) -> None:
    keys = KeyService()
    settings = {"intake_url": keys.url, "intake_api_key": "fk_notifier-integration"}
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, **settings) as h:
        leads = [uuid4() for _ in range(3)]
        for lead in leads:
            keys.keys[lead] = new_data_key()
        await h.feed(
            *(captured_v2(lead, keys.keys[lead], f"{lead.hex[:8]}@example.com") for lead in leads)
        )
        await keys.start()
        try:
            async with counted_pool(h) as counted:
                resolver = ContactResolver(counted.pool, h.settings)
                with counted.counting() as statements:
                    async with resolver.resources():
                        assert await resolver.step() == 3
                        idle = await resolver.idle_seconds()
        finally:
            await keys.stop()
        stored = await h.pool.fetch("SELECT lead_id, email FROM contacts ORDER BY email")
        assert {r["lead_id"]: r["email"] for r in stored} == {
            lead: f"{lead.hex[:8]}@example.com" for lead in leads
        }
        assert await h.pool.fetchval("SELECT count(*) FROM pending_contacts") == 0
    assert len(statements) == 2, [s[:90] for s in statements]
    assert "BEGIN" not in statements
    assert statements[1].startswith("WITH opened")
    assert idle == resolver.poll_interval  # nothing waits: no query to learn it


async def test_a_retry_the_sender_records_sets_its_next_sleep_without_a_query(
    h: Harness,
) -> None:
    lead, events = _new_lead()
    await h.feed(*events)
    h.mailbox.stop()  # the SMTP server unreachable: the welcome is tried again soon
    async with counted_pool(h) as counted:
        sender = TouchSender(counted.pool, h.settings)
        async with sender.resources():
            assert await sender.send_due() == 1
            with counted.counting() as statements:
                idle = await sender.idle_seconds()
    [touch] = await h.touches(lead)
    assert (touch["status"], touch["reason"]) == ("scheduled", "retrying")
    assert statements == []
    # Due again after the backoff (FUNNEL_RETRY_BASE_SECONDS 0.01 here, with jitter), well
    # before the sender's poll (0.5 s); nothing else is due sooner.
    assert 0.01 <= idle < 0.1 < sender.poll_interval


async def test_a_poll_keeps_its_sealed_contacts_in_one_statement_in_event_order(
    h: Harness,
) -> None:
    """A poll's sealed contacts (v2 events) wait for the contact resolver as one statement
    that also wakes it; a person's rows keep their events' order (the resolver opens them
    in that order), and the sealed data is stored as the event carried it."""
    cache = PlaybookCache()
    leads = [uuid4() for _ in range(3)]
    events = [captured_v2(lead, new_data_key(), f"{lead.hex[:8]}@example.com") for lead in leads]
    again = captured_v2(leads[0], new_data_key(), "later@example.com")  # the first one's second
    async with counted_pool(h) as counted:
        _, warm = _new_lead()
        await _poll(counted.pool, cache, *warm)
        with counted.counting() as statements:
            await _poll(counted.pool, cache, *events, again)
    kept = [s for s in statements if "INTO pending_contacts" in s]
    assert len(kept) == 1, statements
    assert "pg_notify" in kept[0]
    rows = await h.pool.fetch("SELECT lead_id, sealed FROM pending_contacts ORDER BY id")
    assert [r["lead_id"] for r in rows] == [*leads, leads[0]]
    sent = [e.personal_data.model_dump(mode="json") for e in (*events, again)]
    assert [r["sealed"] for r in rows] == sent


async def test_a_person_erased_in_the_same_poll_leaves_no_sealed_contact(h: Harness) -> None:
    """The erasure deletes what waits for the resolver: the poll's rows kept before it are
    written first, so they are deleted with the rest; another person's stay."""
    gone, kept = uuid4(), uuid4()
    now = datetime.now(UTC)
    await h.feed(
        captured_v2(gone, new_data_key(), "gone@example.com"),
        captured_v2(kept, new_data_key(), "kept@example.com"),
        LeadErased(lead_id=gone, request_id=uuid4(), erased_at=now),
        captured_v2(gone, new_data_key(), "late@example.com"),  # a late event: not kept
    )
    rows = await h.pool.fetch("SELECT lead_id FROM pending_contacts ORDER BY id")
    assert [r["lead_id"] for r in rows] == [kept]
    assert await h.pool.fetchval("SELECT count(*) FROM erased_leads WHERE lead_id = $1", gone)
