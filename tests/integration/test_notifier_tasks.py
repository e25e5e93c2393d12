"""Sales tasks that get done, on the real PostgreSQL and Kafka: a playbook's task is made open
(version 1) and says so on funnel.touch-events; people list them (filters, cursor pages: every
task once), read one with its ETag, mark it done, hand it over, move its due time (PATCH, with
or without If-Match); a stale If-Match is a 412 that writes nothing; every refusal writes
nothing; each change is a `funnel.task.updated.v1` record on the wire, its actor the calling
key's name."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from funnel_contracts import Envelope, LeadOwnerChanged, LeadScored, decode
from funnel_contracts.topics import TOUCH_EVENTS
from funnel_devstack.stack import Stack
from funnel_servicekit.kafka import create_producer, ensure_topics
from funnel_servicekit.outbox import OutboxRelay
from funnel_servicekit.unit_of_work import Outbox, Transactions
from notifier.tasks import service as tasks
from notifier.tasks import store as task_store
from tests.integration.kit_support import stop_task
from tests.integration.notifier_harness import Harness, captured, notifier_harness

pytestmark = pytest.mark.integration

ANA_KEY = "ana-may-read-and-write-leads-0123456789"
BEN_KEY = "ben-may-only-read-leads-0123456789abc"
TASK_UPDATED = "funnel.task.updated.v1"
FIELDS = {
    "task_id", "lead_id", "title", "playbook", "funnel_id", "stage", "assignee", "status",
    "due_at", "created_at", "updated_at", "version",
}  # fmt: skip


def _key(name: str, key: str, scopes: list[str]) -> dict[str, Any]:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": scopes}


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ANA = _as(ANA_KEY)
BEN = _as(BEN_KEY)


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    keys = [
        _key("ana", ANA_KEY, ["leads:read", "leads:write"]),
        _key("ben", BEN_KEY, ["leads:read"]),
    ]
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, api_keys=keys) as harness:
        yield harness


def _hot(lead: UUID, score: float = 81.0) -> LeadScored:
    return LeadScored(
        lead_id=lead, funnel_id="digital-sales", score=score, fit_score=40,
        engagement_score=score - 40, temperature="hot", previous_temperature="warm",
        scored_at=datetime.now(UTC),
    )  # fmt: skip


async def _hot_lead_task(h: Harness) -> tuple[UUID, str]:
    """A lead turns hot; the sender makes its "call now" task. Returns (lead, task id)."""
    lead = uuid4()
    await h.feed(captured(lead), _hot(lead))
    await h.send_due()
    async with h.api() as api:
        listed = await api.get("/v1/tasks", params={"lead_id": str(lead)})
    assert listed.status_code == 200, listed.text
    [task] = listed.json()["items"]
    return lead, task["task_id"]


async def _task_row(h: Harness, task_id: str) -> dict[str, Any]:
    row = await h.pool.fetchrow("SELECT * FROM tasks WHERE id = $1", UUID(task_id))
    assert row is not None
    return dict(row)


async def _task_events(h: Harness) -> list[dict[str, Any]]:
    return await h.emitted(TASK_UPDATED)


@contextlib.asynccontextmanager
async def _relay(h: Harness, infra: Stack) -> AsyncIterator[None]:
    """The kit's outbox relay publishing the notifier's outbox to the session's Kafka."""
    await ensure_topics(infra.kafka_bootstrap, 3)
    producer = create_producer(infra.kafka_bootstrap, f"it-notifier-tasks-{uuid4().hex[:8]}")
    await producer.start()
    relay = OutboxRelay(
        h.pool, producer, dsn=h.settings.database_url, schema="notifier", poll_seconds=0.2
    )
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        await stop_task(relay.stop, task, timeout=30)


async def _on_the_wire(
    infra: Stack, lead: UUID, *, count: int, timeout: float = 30.0
) -> list[Envelope]:
    """The task.updated records about `lead` on funnel.touch-events, decoded from their bytes;
    waits for `count` of them, then a second more (a duplicate would show)."""
    consumer = AIOKafkaConsumer(
        TOUCH_EVENTS,
        bootstrap_servers=infra.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[Envelope] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    envelope = decode(r.key, r.value, list(r.headers))
                    if envelope.subject == str(lead) and envelope.type == TASK_UPDATED:
                        assert r.key == str(lead).encode()  # keyed by lead: in order per lead
                        found.append(envelope)
            if len(found) >= count and settle_until is None:
                settle_until = time.monotonic() + 1.0
            if settle_until is not None and time.monotonic() > settle_until:
                break
    finally:
        await consumer.stop()
    return found


async def test_a_playbook_task_is_made_open_at_version_1_and_announced_once(
    h: Harness, infra: Stack
) -> None:
    lead, task_id = await _hot_lead_task(h)
    async with h.api() as api:
        got = await api.get(f"/v1/tasks/{task_id}", headers=BEN)
    assert got.status_code == 200, got.text
    assert got.headers["etag"] == '"1"'
    task = got.json()
    assert set(task) >= FIELDS
    assert (task["lead_id"], task["title"], task["playbook"]) == (
        str(lead),
        "Hot lead: call now",
        "hot-lead-call",
    )
    assert (task["status"], task["version"], task["assignee"]) == ("open", 1, None)
    assert task["funnel_id"] == "digital-sales"
    assert task["due_at"] is not None
    assert task["updated_at"] == task["created_at"]
    # The first list's callers keep what they read: `tasks`, `id`, `score`, `temperature`.
    async with h.api() as api:
        body = (await api.get("/v1/tasks", params={"lead_id": str(lead)})).json()
    assert body["tasks"] == body["items"]
    assert (body["items"][0]["id"], body["items"][0]["score"]) == (task_id, 81.0)
    assert body["items"][0]["temperature"] == "hot"
    assert body["next_after"] is None

    [event] = await _task_events(h)
    assert (event["task_id"], event["lead_id"], event["status"], event["version"]) == (
        task_id,
        str(lead),
        "open",
        1,
    )
    assert (event["actor"], event["playbook"], event["title"]) == (
        None,
        "hot-lead-call",
        "Hot lead: call now",
    )
    # The sender trying the touch again (its push failed) makes no second task nor event.
    tx = Transactions(h.pool, Outbox("notifier", "notifier"))
    again = await tasks.open_task(
        tx, UUID(task_id), lead, playbook="hot-lead-call", title="Hot lead: call now",
        funnel_id="digital-sales", stage=None,
    )  # fmt: skip
    assert (again["task_id"], again["version"]) == (UUID(task_id), 1)
    assert len(await _task_events(h)) == 1
    assert await h.pool.fetchval("SELECT count(*) FROM tasks WHERE lead_id = $1", lead) == 1
    # An erased lead gets no task, and nothing is announced.
    erased = uuid4()
    await h.pool.execute("INSERT INTO erased_leads (lead_id) VALUES ($1)", erased)
    none = await tasks.open_task(
        tx, uuid4(), erased, playbook="hot-lead-call", title="Hot lead: call now",
        funnel_id="digital-sales", stage=None,
    )  # fmt: skip
    assert none == {}
    assert await h.pool.fetchval("SELECT count(*) FROM tasks WHERE lead_id = $1", erased) == 0
    assert len(await _task_events(h)) == 1

    async with _relay(h, infra):
        [record] = await _on_the_wire(infra, lead, count=1)
    assert record.source == "notifier"
    assert (record.data["task_id"], record.data["status"], record.data["version"]) == (
        task_id,
        "open",
        1,
    )


def _owner(lead: UUID, owner: str | None, at: datetime) -> LeadOwnerChanged:
    return LeadOwnerChanged(
        lead_id=lead, funnel_id="digital-sales", owner=owner, previous_owner=None,
        actor="ana", changed_at=at,
    )  # fmt: skip


async def test_a_playbook_task_goes_to_the_owner_of_its_lead(h: Harness) -> None:
    now = datetime.now(UTC)
    owned, released, unowned, scored_owner = uuid4(), uuid4(), uuid4(), uuid4()
    # ben takes `owned` over; an older change (to ana) arriving late changes nothing.
    await h.feed(
        captured(owned), _owner(owned, "ben", now), _owner(owned, "ana", now - timedelta(minutes=5))
    )
    await h.feed(captured(released), _owner(released, "ana", now - timedelta(minutes=1)))
    await h.feed(_owner(released, None, now))
    await h.feed(captured(unowned))
    # The owner also travels in the score event itself.
    await h.feed(captured(scored_owner))
    for lead in (owned, released, unowned):
        await h.feed(_hot(lead))
    await h.feed(_hot(scored_owner).model_copy(update={"owner": "ana"}))
    await h.send_due()
    async with h.api() as api:
        page = (await api.get("/v1/tasks", headers=BEN)).json()
    assignees = {UUID(t["lead_id"]): t["assignee"] for t in page["items"]}
    assert assignees == {owned: "ben", released: None, unowned: None, scored_owner: "ana"}
    events = {UUID(e["lead_id"]): e for e in await _task_events(h)}
    assert {lead: e["assignee"] for lead, e in events.items()} == assignees
    assert {e["version"] for e in events.values()} == {1}


async def test_patch_with_and_without_if_match_and_the_412_that_writes_nothing(
    h: Harness, infra: Stack
) -> None:
    lead, task_id = await _hot_lead_task(h)
    due = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    async with h.api() as api:
        # Handed to ben, due tomorrow; the actor in the body is ignored: ana's key did it.
        first = await api.patch(
            f"/v1/tasks/{task_id}",
            json={"assignee": "ben", "due_at": due.isoformat(), "actor": "mallory"},
            headers={**ANA, "If-Match": '"1"'},
        )
        assert first.status_code == 200, first.text
        assert first.headers["etag"] == '"2"'
        assert (first.json()["assignee"], first.json()["version"]) == ("ben", 2)
        assert first.json()["status"] == "open"
        assert datetime.fromisoformat(first.json()["due_at"]) == due
        # Someone still holding version 1 marks it done: refused, nothing written.
        before = await _task_row(h, task_id)
        stale = await api.patch(
            f"/v1/tasks/{task_id}", json={"status": "done"}, headers={**ANA, "If-Match": '"1"'}
        )
        assert stale.status_code == 412, stale.text
        assert stale.headers["content-type"] == "application/problem+json"
        problem = stale.json()
        assert (problem["status"], problem["current_version"], problem["current_status"]) == (
            412,
            2,
            "open",
        )
        assert stale.headers["etag"] == '"2"'
        assert await _task_row(h, task_id) == before
        assert len(await _task_events(h)) == 2
        # With the current version it goes through (a weak tag and a list are understood).
        done = await api.patch(
            f"/v1/tasks/{task_id}",
            json={"status": "done"},
            headers={**ANA, "If-Match": 'W/"7", "2"'},
        )
        assert done.status_code == 200, done.text
        assert (done.json()["status"], done.json()["version"]) == ("done", 3)
        # Without If-Match a change applies to whatever is current: reopened, unassigned.
        reopened = await api.patch(
            f"/v1/tasks/{task_id}", json={"status": "open", "assignee": None}, headers=ANA
        )
        assert reopened.status_code == 200, reopened.text
        assert (reopened.json()["status"], reopened.json()["assignee"]) == ("open", None)
        assert reopened.headers["etag"] == '"4"'
        # The admin key's name is "admin"; dismissing is a status too. A change that changes
        # nothing keeps the version and says nothing.
        dismissed = await api.patch(f"/v1/tasks/{task_id}", json={"status": "dismissed"})
        assert dismissed.json()["version"] == 5
        same = await api.patch(f"/v1/tasks/{task_id}", json={"status": "dismissed"})
        assert (same.status_code, same.json()["version"]) == (200, 5)
        got = await api.get(f"/v1/tasks/{task_id}")
        assert got.headers["etag"] == '"5"'
        assert got.json() == dismissed.json()
    row = await _task_row(h, task_id)
    assert (row["status"], row["assignee"], row["version"]) == ("dismissed", None, 5)
    assert row["due_at"] == due
    assert row["updated_at"] > row["created_at"]

    events = await _task_events(h)
    assert [(e["version"], e["status"], e["assignee"], e["actor"]) for e in events] == [
        (1, "open", None, None),
        (2, "open", "ben", "ana"),
        (3, "done", "ben", "ana"),
        (4, "open", None, "ana"),
        (5, "dismissed", None, "admin"),
    ]
    async with _relay(h, infra):
        records = await _on_the_wire(infra, lead, count=5)
    assert [(r.data["version"], r.data["status"], r.data["actor"]) for r in records] == [
        (1, "open", None),
        (2, "open", "ana"),
        (3, "done", "ana"),
        (4, "open", "ana"),
        (5, "dismissed", "admin"),
    ]
    assert datetime.fromisoformat(records[1].data["due_at"]) == due


async def _many_tasks(h: Harness, leads: list[UUID], per_lead: int) -> list[UUID]:
    """Tasks made as the sender makes them; each lead's in one transaction, so several share
    a created_at (the cursor must still give every task once)."""
    tx = Transactions(h.pool, Outbox("notifier", "notifier"))
    made: list[UUID] = []
    for lead in leads:
        async with tx() as uow:
            for _ in range(per_lead):
                task_id = uuid4()
                _, created = await task_store.create(
                    uow.conn, task_id, lead, playbook="hot-lead-call",
                    title="Hot lead: call now", funnel_id="digital-sales", stage="interest",
                )  # fmt: skip
                assert created
                made.append(task_id)
    return made


async def _all_pages(
    api: httpx.AsyncClient, params: dict[str, Any], limit: int
) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    pages = 0
    while True:
        query = {**params, "limit": limit, **({"after": after} if after else {})}
        page = await api.get("/v1/tasks", params=query, headers=BEN)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        after = body["next_after"]
        if after is None:
            return items, pages
        assert len(body["items"]) == limit  # a page with more after it is full


async def test_list_filters_and_cursor_pages_give_every_task_once(h: Harness) -> None:
    leads = [uuid4() for _ in range(9)]
    made = await _many_tasks(h, leads, per_lead=5)  # 45 tasks
    # ana takes the first lead's tasks, ben the second's; three of ana's are done; the
    # third lead's are due yesterday.
    yesterday = datetime.now(UTC) - timedelta(days=1)
    async with h.api() as api:
        for i, task_id in enumerate(made[:10]):
            change: dict[str, Any] = {"assignee": "ana" if i < 5 else "ben"}
            if i < 3:
                change["status"] = "done"
            answer = await api.patch(f"/v1/tasks/{task_id}", json=change, headers=ANA)
            assert answer.status_code == 200, answer.text
        for task_id in made[10:15]:
            answer = await api.patch(
                f"/v1/tasks/{task_id}", json={"due_at": yesterday.isoformat()}, headers=ANA
            )
            assert answer.status_code == 200, answer.text

        everything, pages = await _all_pages(api, {}, limit=7)
        assert pages == 7  # 45 tasks, 7 a page
        ids = [UUID(t["task_id"]) for t in everything]
        assert len(ids) == len(set(ids)) == 45
        assert set(ids) == set(made)
        order = [(datetime.fromisoformat(t["created_at"]), UUID(t["task_id"])) for t in everything]
        assert order == sorted(order, reverse=True)  # newest first, ties by id
        default = (await api.get("/v1/tasks", headers=BEN)).json()
        assert len(default["items"]) == 45
        assert default["next_after"] is None
        exact = (await api.get("/v1/tasks", params={"limit": 45}, headers=BEN)).json()
        assert exact["next_after"] is None  # no empty page after a full last one

        done, _ = await _all_pages(api, {"status": "done"}, limit=2)
        assert {UUID(t["task_id"]) for t in done} == set(made[:3])
        anas, _ = await _all_pages(api, {"assignee": "ana"}, limit=2)
        assert {UUID(t["task_id"]) for t in anas} == set(made[:5])
        anas_open, _ = await _all_pages(api, {"assignee": "ana", "status": "open"}, limit=1)
        assert {UUID(t["task_id"]) for t in anas_open} == set(made[3:5])
        bens, _ = await _all_pages(api, {"assignee": "ben", "status": "dismissed"}, limit=3)
        assert bens == []
        one_lead, _ = await _all_pages(api, {"lead_id": str(leads[4])}, limit=3)
        assert {UUID(t["task_id"]) for t in one_lead} == set(made[20:25])
        overdue, _ = await _all_pages(
            api, {"due_before": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, limit=4
        )
        assert {UUID(t["task_id"]) for t in overdue} == set(made[10:15])
        # Every task made now is due now: due before tomorrow holds all of them.
        due_soon, _ = await _all_pages(
            api, {"due_before": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, limit=50
        )
        assert len(due_soon) == 45


async def test_refusals_answer_4xx_naming_the_field_and_write_nothing(h: Harness) -> None:
    _lead, task_id = await _hot_lead_task(h)
    before = await _task_row(h, task_id)
    events_before = len(await _task_events(h))
    unknown = uuid4()

    def field(answer: httpx.Response) -> str:
        assert answer.headers["content-type"] == "application/problem+json", answer.text
        return str(answer.json()["errors"][0]["field"])

    async with h.api() as api:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"status": "maybe"}, "status"),
            ({"limit": 201}, "limit"),
            ({"limit": 0}, "limit"),
            ({"after": "not-a-cursor"}, "after"),
            ({"after": "WzEsMl0"}, "after"),  # base64 of [1,2]: not one of ours
            ({"due_before": "2026-01-01T00:00:00"}, "due_before"),  # no time zone
            ({"lead_id": "nope"}, "lead_id"),
        ]
        for params, named in cases:
            answer = await api.get("/v1/tasks", params=params, headers=BEN)
            assert (answer.status_code, field(answer)) == (422, named), params

        missing = await api.get(f"/v1/tasks/{unknown}", headers=BEN)
        assert (missing.status_code, field(missing)) == (404, "task_id")
        patch_missing = await api.patch(f"/v1/tasks/{unknown}", json={"status": "done"})
        assert (patch_missing.status_code, field(patch_missing)) == (404, "task_id")
        bad_id = await api.get("/v1/tasks/not-a-uuid", headers=BEN)
        assert (bad_id.status_code, field(bad_id)) == (422, "task_id")

        url = f"/v1/tasks/{task_id}"
        for body, named in [
            ({"status": "finished"}, "status"),
            ({"status": None}, "status"),
            ({"assignee": "mallory"}, "assignee"),  # not the name of a key
            ({"assignee": ""}, "assignee"),
            ({"due_at": "tomorrow"}, "due_at"),
            ({"due_at": "2026-12-24T09:00:00"}, "due_at"),  # no time zone
            ({"status": "done", "colour": "red"}, "colour"),
            ({}, "body"),
            ({"actor": "ana"}, "body"),  # only an ignored field: nothing to change
        ]:
            answer = await api.patch(url, json=body, headers=ANA)
            assert (answer.status_code, field(answer)) == (422, named), body
        not_json = await api.patch(
            url, content=b"status=done", headers={**ANA, "content-type": "text/plain"}
        )
        assert not_json.status_code == 422
        # ben may read tasks, not change them; no key, no answer.
        assert (await api.patch(url, json={"status": "done"}, headers=BEN)).status_code == 403
        anonymous = await api.patch(url, json={"status": "done"}, headers={"Authorization": ""})
        assert anonymous.status_code == 401
        assert (await api.get(url, headers={"Authorization": ""})).status_code == 401
        # Still version 1 for whoever asks.
        got = await api.get(url, headers=BEN)
        assert (got.headers["etag"], got.json()["status"]) == ('"1"', "open")
    assert await _task_row(h, task_id) == before
    assert len(await _task_events(h)) == events_before == 1
    assert await h.pool.fetchval("SELECT count(*) FROM tasks") == 1
