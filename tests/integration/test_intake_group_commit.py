"""Form posts in group commits on the real PostgreSQL: concurrent posts share transactions
(counted by PostgreSQL itself), each post's rows and event are all there, a post refused inside
its group leaves the others committed, a post that fails validation never joins, and a
database outage in the middle of a group answers its posts 503 with nothing half-written."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from prometheus_client import REGISTRY

from funnel_contracts import ActivityRecorded, LeadCapturedV2
from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
FORM = "/v1/forms/launch/submissions"
# No rate limit: the limiter's own statements would count as transactions too.
UNLIMITED = {"rate_limit_per_ip": "unlimited", "rate_limit_per_form": "unlimited"}
# One group at a time, waiting long enough for every post sent together to join it.
ONE_SLOW_GROUP = {
    **UNLIMITED,
    "group_commit_max_wait_seconds": 0.2,
    "group_commit_groups_in_flight": 1,
}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"name": "form-posts", **labels}) or 0.0


def group_metrics() -> dict[str, float]:
    return {
        "groups": metric("funnel_group_commit_transactions_total", outcome="committed"),
        "failed_groups": metric("funnel_group_commit_transactions_total", outcome="failed"),
        "units": metric("funnel_group_commit_size_sum"),
        "failed_alone": metric("funnel_group_commit_units_total", outcome="failed_alone"),
    }


def delta(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in group_metrics().items()}


async def post_all(intake: Intake, bodies: list[dict[str, Any]], **kw: Any) -> list[Any]:
    return list(await asyncio.gather(*(intake.client.post(FORM, json=b, **kw) for b in bodies)))


def emails(n: int) -> list[dict[str, Any]]:
    run = uuid4().hex[:8]
    return [{"email": f"p{i}-{run}@example.com", "first_name": f"P{i}"} for i in range(n)]


async def committed_transactions(admin_dsn: str, dsn: str) -> int:
    """pg_stat_database's commit count of `dsn`'s database, once it stopped moving (a
    backend reports its counts when it exits, or now and then while it lives)."""
    database = dsn.rsplit("/", 1)[-1].split("?")[0]
    conn = await asyncpg.connect(admin_dsn)
    try:
        last, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            now = int(
                await conn.fetchval(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database
                )
            )
            if now == last:
                return now
            last = now
            await asyncio.sleep(1.0)
        return last
    finally:
        await conn.close()


async def test_concurrent_posts_share_transactions_and_each_gets_its_rows(
    fresh_dsn: str, infra: Stack
) -> None:
    # 64 posts at once: more than the default cap of requests in progress.
    settings = {**UNLIMITED, "group_commit_max_wait_seconds": 0.05, "http_max_in_flight": 0}
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **settings) as intake:
        await intake.create_form("launch")
        assert (await intake.client.post(FORM, json=emails(1)[0])).status_code == 202
    # The app stopped: its connections reported their counts as they closed.
    before_commits = await committed_transactions(infra.postgres.dsn, fresh_dsn)
    posts = 64
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **settings) as intake:
        # One post first: the form is then cached, not read by each of the 64.
        assert (await intake.client.post(FORM, json=emails(1)[0])).status_code == 202
        before = group_metrics()
        answers = await post_all(intake, emails(posts))
        moved = delta(before)
        assert [a.status_code for a in answers] == [202] * posts
        leads, subs = await intake.count("leads"), await intake.count("submissions")
        events = await intake.events("funnel.lead.captured.v2")
    after_commits = await committed_transactions(infra.postgres.dsn, fresh_dsn)

    assert (leads, subs) == (posts + 2, posts + 2)
    lead_ids = {a.json()["lead_id"] for a in answers}
    assert len(lead_ids) == posts
    assert lead_ids <= {str(e.lead_id) for e in events if isinstance(e, LeadCapturedV2)}
    assert len(events) == posts + 2  # one outbox row per post, none twice
    assert moved["units"] == posts
    assert 1 <= moved["groups"] <= posts / 8, moved
    # PostgreSQL's own count: the app's start, a form read, 65 posts and the stop, in a few
    # commits (one commit per post would be 65 and more).
    assert after_commits - before_commits < posts / 2, (before_commits, after_commits)


async def test_a_post_refused_inside_its_group_leaves_the_others_committed(
    fresh_dsn: str, infra: Stack
) -> None:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **ONE_SLOW_GROUP) as intake:
        await intake.create_form("launch")
        first = await intake.client.post(
            FORM, json={"email": "kept@example.com"}, headers={"idempotency-key": "k-1"}
        )
        assert first.status_code == 202
        before = group_metrics()
        bodies = emails(8)
        same = {"email": "twice@example.com", "first_name": "Twice"}

        answers = await asyncio.gather(
            *(intake.client.post(FORM, json=b) for b in bodies),
            # the same key with another body: 422, inside the group
            intake.client.post(
                FORM, json={"email": "other@example.com"}, headers={"idempotency-key": "k-1"}
            ),
            # the same person twice in one group: one lead, the second post finds the first
            intake.client.post(FORM, json=same),
            intake.client.post(FORM, json=same),
            # the same new key twice in one group: the second is the first's answer replayed
            intake.client.post(
                FORM, json={"email": "keyed@example.com"}, headers={"idempotency-key": "k-2"}
            ),
            intake.client.post(
                FORM, json={"email": "keyed@example.com"}, headers={"idempotency-key": "k-2"}
            ),
            # invalid: refused before it could join a group
            intake.client.post(FORM, json={"email": "not an email"}),
        )
        moved = delta(before)

        statuses = [a.status_code for a in answers]
        assert statuses == [202] * 8 + [422, 202, 202, 202, 202, 422]
        reused, invalid = answers[8].json(), answers[13].json()
        assert [e["field"] for e in reused["errors"]] == ["Idempotency-Key"]
        assert [e["field"] for e in invalid["errors"]] == ["email"]
        twice = [answers[9].json(), answers[10].json()]
        assert twice[0]["lead_id"] == twice[1]["lead_id"]
        assert sorted(t["new_lead"] for t in twice) == [False, True]
        keyed = [answers[11], answers[12]]
        assert keyed[0].json()["lead_id"] == keyed[1].json()["lead_id"]
        assert sorted(a.headers.get("idempotent-replayed", "") for a in keyed) == ["", "true"]
        # kept + 8 + twice + keyed; "other@" never written
        assert await intake.count("leads") == 1 + 8 + 1 + 1
        assert await intake.val("SELECT count(*) FROM leads WHERE email = 'other@example.com'") == 0
        assert await intake.count("submissions") == 1 + 8 + 2 + 1
        assert len(await intake.events()) == 1 + 8 + 2 + 1  # captured, or updated for twice@
        # 13 joined (the invalid one never did), one of them refused alone, one transaction.
        assert moved == {"groups": 1, "failed_groups": 0, "units": 13, "failed_alone": 1}


async def test_a_database_outage_answers_the_group_503_and_writes_nothing(
    fresh_dsn: str, infra: Stack
) -> None:
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **ONE_SLOW_GROUP) as intake:
        await intake.create_form("launch")
        assert (await intake.client.post(FORM, json=emails(1)[0])).status_code == 202
        before_rows = [await intake.count(t) for t in ("leads", "submissions", "outbox")]
        before = group_metrics()
        blocker = await asyncpg.connect(fresh_dsn)
        try:
            # The group's writes stop at the outbox (its leads already written, not committed).
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute("LOCK TABLE intake.outbox IN SHARE MODE")
            posts = asyncio.gather(*(intake.client.post(FORM, json=b) for b in emails(6)))
            waiting = await _wait_for_lock_waiter(blocker)
            # The group's connection is cut (the database failing over, a network cut).
            assert await blocker.fetchval("SELECT pg_terminate_backend($1)", waiting)
            await blocking.rollback()
            answers = await asyncio.wait_for(posts, 30)
        finally:
            await blocker.close()

        assert [a.status_code for a in answers] == [503] * 6
        assert {a.json()["type"] for a in answers} == {"urn:funnel:problem:dependency-unavailable"}
        assert all(a.headers["retry-after"] for a in answers)
        after_rows = [await intake.count(t) for t in ("leads", "submissions", "outbox")]
        assert after_rows == before_rows  # nothing half-written
        moved = delta(before)
        assert (moved["groups"], moved["failed_groups"], moved["units"]) == (0, 1, 6)
        # The next posts find a new connection.
        assert (await intake.client.post(FORM, json=emails(1)[0])).status_code == 202
        assert await intake.count("leads") == before_rows[0] + 1


async def _wait_for_lock_waiter(conn: asyncpg.Connection) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid = await conn.fetchval(
            """SELECT pid FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'
                 AND pid <> pg_backend_pid() LIMIT 1"""
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.02)
    raise AssertionError("no intake connection waited on the outbox lock")


def batches(outcome: str) -> float:
    return metric("funnel_group_commit_batches_total", outcome=outcome)


async def test_a_group_s_new_people_are_written_by_one_statement(
    fresh_dsn: str, infra: Stack
) -> None:
    """New people by email in one group: one batch statement writes them all (their leads,
    submissions, keys, events, and what waited for their email); a known person, and the
    second post of a person new in the same group, run their own work in the same group."""
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **ONE_SLOW_GROUP) as intake:
        await intake.create_form("launch")
        known = await intake.client.post(FORM, json={"email": "known@example.com"})
        waiting = await intake.client.post(
            "/v1/activities",
            json={
                "activities": [
                    {"type": "webinar_attended", "email": "waited@example.com",
                     "occurred_at": "2026-11-01T09:00:00+00:00"}
                ]
            },
            headers=ADMIN,
        )  # fmt: skip
        assert (known.status_code, waiting.status_code) == (202, 202)
        before = {**group_metrics(), "batched": metric(
            "funnel_group_commit_units_total", outcome="batched"
        ), "written": batches("written")}  # fmt: skip
        new = emails(6)
        twice = {"email": "twice@example.com", "first_name": "Twice"}
        bodies = [*new, {"email": "known@example.com", "last_name": "Again"}, twice, twice]
        bodies.append({"email": "waited@example.com", "first_name": "Wai"})

        answers = await post_all(intake, bodies)

        assert [a.status_code for a in answers] == [202] * len(bodies)
        moved = delta({k: before[k] for k in group_metrics()})
        batched = metric("funnel_group_commit_units_total", outcome="batched")
        assert moved["groups"] == 1
        assert batches("written") - before["written"] == 1
        # 6 new, waited@ and the first twice@: written by the batch; known@ and the second
        # twice@ (its email taken by the first) by their own work.
        assert batched - before["batched"] == 8
        new_lead = [a.json()["new_lead"] for a in answers]
        assert new_lead[:7] == [True] * 6 + [False]
        assert (sorted(new_lead[7:9]), new_lead[9]) == ([False, True], True)
        assert answers[7].json()["lead_id"] == answers[8].json()["lead_id"]
        assert answers[6].json()["lead_id"] == known.json()["lead_id"]
        assert await intake.count("leads") == 1 + 6 + 1 + 1
        assert await intake.count("submissions") == 1 + len(bodies)
        events = await intake.events()
        for answer in answers[:6]:
            mine = [type(e) for e in events if str(e.lead_id) == answer.json()["lead_id"]]
            assert mine == [LeadCapturedV2]
        waited = [e for e in events if str(e.lead_id) == answers[9].json()["lead_id"]]
        assert [type(e) for e in waited] == [LeadCapturedV2, ActivityRecorded]
        person = await intake.person(waited[0])  # type: ignore[arg-type]
        assert (person.email, person.first_name) == ("waited@example.com", "Wai")
        assert await intake.val("SELECT count(*) FROM activities WHERE lead_id IS NULL") == 0
        keys = await intake.val("SELECT count(*) FROM subject_keys")
        terms = await intake.val("SELECT count(DISTINCT lead_id) FROM lead_search_terms")
        assert (keys, terms) == (9, 9)


async def test_a_batch_that_fails_is_undone_and_its_posts_are_written_one_by_one(
    fresh_dsn: str, infra: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lead_intake.leads import store

    real = store.create_people

    async def writes_then_fails(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)  # its rows are written, then the statement after fails
        raise asyncpg.UniqueViolationError("injected after the batch wrote its rows")

    monkeypatch.setattr(store, "create_people", writes_then_fails)
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **ONE_SLOW_GROUP) as intake:
        await intake.create_form("launch")
        before = batches("rolled_back")
        bodies = emails(5)

        answers = await post_all(intake, bodies)

        assert [a.status_code for a in answers] == [202] * 5
        assert batches("rolled_back") - before == 1
        assert all(a.json()["new_lead"] for a in answers)
        assert await intake.count("leads") == 5
        assert await intake.count("subject_keys") == 5
        captured = await intake.events("funnel.lead.captured.v2")
        assert sorted(str(e.lead_id) for e in captured) == sorted(
            a.json()["lead_id"] for a in answers
        )  # each once: the batch's rows and events were undone
