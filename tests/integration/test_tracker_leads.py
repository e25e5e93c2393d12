"""The leads workspace on the real PostgreSQL: the work queue (scores that cool with a pinned
wall clock, cursor pages, filters), owners, and moves that cannot overwrite a colleague's
(ETag / If-Match, 412). Events go through the real handler (Harness.feed); what the tracker
emits is read from its outbox (tests/integration/test_tracker_owners_on_the_wire.py reads
the same events back from Kafka, and rebuilds)."""

from __future__ import annotations

import contextlib
import random
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from funnel_contracts import EventData, LeadErased, LeadMerged, LeadUpdated
from funnel_contracts.examples import lead_captured_v2
from funnel_devstack.stack import Stack
from funnel_servicekit import migrations
from funnel_servicekit.auth import new_api_key
from stage_tracker.app import MIGRATIONS, create_app
from stage_tracker.runtime import Clock
from stage_tracker.scoring.models.decay import decay_key
from tests.integration.tracker_harness import (
    ADMIN_KEY,
    Harness,
    activity,
    captured,
    tracker_harness,
)

pytestmark = pytest.mark.integration

ANA, ANA_ENTRY = new_api_key("ana", ["leads:read", "leads:write"])
BEN, BEN_ENTRY = new_api_key("ben", ["leads:read", "leads:write"])
READER, READER_ENTRY = new_api_key("reader", ["leads:read"])
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
H14 = 14 * 86400.0


@pytest.fixture
async def h(infra: Stack, fresh_dsn: str) -> AsyncIterator[Harness]:
    keys = [ANA_ENTRY, BEN_ENTRY, READER_ENTRY]
    async with tracker_harness(fresh_dsn, infra.kafka_bootstrap, api_keys=keys) as hh:
        yield hh


@contextlib.asynccontextmanager
async def api(h: Harness, key: str = ADMIN_KEY) -> AsyncIterator[tuple[httpx.AsyncClient, Clock]]:
    """The tracker's API in-process, with its wall clock (pin it to move time)."""
    app: FastAPI = create_app(h.settings.model_copy(update={"run_workers": False}))
    clock: Clock = app.state.runtime.context.clock
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://tracker.test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client,
    ):
        yield client, clock


def formula(fit: float, engagement: float, as_of: datetime, h: float, t: datetime) -> float:
    return fit + engagement * 2 ** (-(t - as_of).total_seconds() / h)


async def page_all(client: httpx.AsyncClient, **params: Any) -> list[list[dict[str, Any]]]:
    pages, after = [], None
    while True:
        query = {**params, **({"after": after} if after else {})}
        response = await client.get("/v1/leads", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        after = body["next_after"]
        if after is None:
            return pages


# ---------------------------------------------------------------- a score that cools


async def test_the_list_sorts_by_the_score_now_as_the_formula_says(h: Harness) -> None:
    fit_only, engaged, mixed = uuid4(), uuid4(), uuid4()
    await h.feed(
        captured(fit_only, at=T0, budget="yes", timing="now"),  # fit 20, engagement 0
        captured(engaged, at=T0),
        activity(engaged, "pricing_viewed", T0),  # 10
        activity(engaged, "cart_created", T0),  # 10
        activity(engaged, "checkout_started", T0),  # 15: engagement 35
        captured(mixed, at=T0, budget="yes"),  # fit 10
        activity(mixed, "cart_abandoned", T0),  # engagement 5
    )
    params = {"funnel_id": "digital-sales"}
    expected = {fit_only: (20.0, 0.0), engaged: (0.0, 35.0), mixed: (10.0, 5.0)}
    async with api(h) as (client, clock):
        for days, order, temperatures in (
            (0, [engaged, fit_only, mixed], ["warm", "warm", "cold"]),
            (14, [fit_only, engaged, mixed], ["warm", "cold", "cold"]),  # 17.5 < 20
            (28, [fit_only, mixed, engaged], ["warm", "cold", "cold"]),  # 8.75 < 11.25
            (3.5, [engaged, fit_only, mixed], ["warm", "warm", "cold"]),
        ):
            now = T0 + days * DAY
            clock.pin(now)
            items = (await client.get("/v1/leads", params=params)).json()["items"]
            assert [UUID(i["lead_id"]) for i in items] == order, days
            assert [i["temperature"] for i in items] == temperatures
            for item in items:
                fit, engagement = expected[UUID(item["lead_id"])]
                assert item["score"] == round(formula(fit, engagement, T0, H14, now), 2)
            ascending = (await client.get("/v1/leads", params={**params, "sort": "score"})).json()
            assert [UUID(i["lead_id"]) for i in ascending["items"]] == order[::-1]
            journey = await client.get(f"/v1/leads/{engaged}/journey")
            assert journey.json()["score"] == round(formula(0, 35, T0, H14, now), 2)
        # The machine's own numbers (event time) are not touched by the wall clock.
        stored = await h.pool.fetchrow(
            "SELECT score, engagement_score FROM lead_stages WHERE lead_id = $1", engaged
        )
        assert tuple(stored) == (35.0, 35.0)


COOLING = """\
id: cooling
name: Fast cooling, with a penalty
stages:
  - name: new
    stall_after_days: 3
  - name: warm-up
    enter_when:
      - event: pricing_viewed
scoring:
  half_life_days: 1
  fit: [{answer: size, values: ["big"], points: 7}, {answer: size, values: ["huge"], points: 15}]
  engagement: {page_view: 3, pricing_viewed: 11, cart_abandoned: -4}
  temperature: {warm: 10, hot: 20}
"""


async def _many_leads(h: Harness, n: int) -> dict[UUID, tuple[str, float, float, datetime, float]]:
    """Leads in digital-sales and in `cooling` (half-life 1 day, a negative signal): returns
    lead -> (funnel, fit, engagement at as_of, as_of, half-life) as the test computes them."""
    rng = random.Random(7)
    points = {
        "digital-sales": {"page_view": 1.0, "pricing_viewed": 10.0, "review_written": 5.0},
        "cooling": {"page_view": 3.0, "pricing_viewed": 11.0, "cart_abandoned": -4.0},
    }
    half_lives = {"digital-sales": H14, "cooling": 86400.0}
    out = {}
    events: list[EventData] = []
    for i in range(n):
        lead = uuid4()
        funnel = "cooling" if i % 2 else "digital-sales"
        start = T0 - rng.randrange(0, 20 * 24) * 3600 * timedelta(seconds=1)
        if funnel == "cooling":
            answers = {"size": rng.choice(["small", "big", "huge"])}
            fit = {"small": 0.0, "big": 7.0, "huge": 15.0}[answers["size"]]
        else:
            answers = {"budget": rng.choice(["yes", "no"])}
            fit = 10.0 if answers["budget"] == "yes" else 0.0
        events.append(captured(lead, funnel_id=funnel, at=start, **answers))
        kinds = rng.sample(sorted(points[funnel]), rng.randrange(0, 3))
        stamps = sorted(start + timedelta(hours=rng.randrange(0, 48)) for _ in kinds)
        engagement, as_of = 0.0, start
        for kind, at in zip(kinds, stamps, strict=True):
            events.append(activity(lead, kind, at))
            as_of = at
        h_s = half_lives[funnel]
        engagement = sum(
            points[funnel][k] * 2 ** (-(as_of - at).total_seconds() / h_s)
            for k, at in zip(kinds, stamps, strict=True)
        )
        out[lead] = (funnel, fit, round(engagement, 2), as_of, h_s)
    await h.feed(*events)
    return out


async def test_cursor_pages_cover_every_lead_once_in_order_while_the_clock_runs(
    h: Harness,
) -> None:
    async with api(h) as (client, clock):
        draft = await client.post("/v1/funnels/cooling/drafts", json={"source": COOLING})
        assert draft.status_code == 201, draft.text
        published = await client.post("/v1/funnels/cooling/versions/1/publish")
        assert published.status_code == 200
        leads = await _many_leads(h, 70)
        cooling = {k: v for k, v in leads.items() if v[0] == "cooling"}
        assert any(v[2] < 0 for v in cooling.values())  # a negative engagement
        assert len({(v[1], v[2] > 0) for v in cooling.values()}) >= 4  # several groups
        first = T0 + timedelta(hours=5)
        for sort in ("-score", "score", "-entered_at", "entered_at"):
            clock.pin(first)
            pages, after = [], None
            while True:
                response = await client.get(
                    "/v1/leads",
                    params={"funnel_id": "cooling", "sort": sort, "limit": 4}
                    | ({"after": after} if after else {}),
                )
                assert response.status_code == 200, response.text
                pages.append(response.json()["items"])
                after = response.json()["next_after"]
                # The clock runs between pages: the cursor keeps the first page's instant.
                clock.pin(clock.now() + timedelta(hours=7))
                if after is None:
                    break
            seen = [UUID(i["lead_id"]) for p in pages for i in p]
            assert len(seen) == len(set(seen)) == len(cooling), sort
            assert all(len(p) == 4 for p in pages[:-1])
            if sort.endswith("score"):
                now_scores = {
                    lead: formula(fit, e, as_of, hl, first)
                    for lead, (_, fit, e, as_of, hl) in cooling.items()
                }
                want = sorted(cooling, key=lambda lead: now_scores[lead], reverse=sort[0] == "-")
                got_scores = [now_scores[lead] for lead in seen]
                want_scores = [now_scores[lead] for lead in want]
                assert got_scores == pytest.approx(want_scores, abs=1e-6)
                items = [i for p in pages for i in p]
                assert [i["score"] for i in items] == [round(s, 2) for s in got_scores]
            else:
                entered = [i["entered_at"] for p in pages for i in p]
                assert entered == sorted(entered, reverse=sort[0] == "-")

        # Temperature filters, each lead in exactly one band, consistent with the scores.
        clock.pin(first)
        bands: dict[str, set[UUID]] = {}
        for temperature in ("hot", "warm", "cold"):
            for sort in ("-score", "entered_at"):
                pages = await page_all(
                    client, funnel_id="cooling", temperature=temperature, sort=sort, limit=3
                )
                got = {UUID(i["lead_id"]) for p in pages for i in p}
                assert all(i["temperature"] == temperature for p in pages for i in p)
                bands.setdefault(temperature, got)
                assert bands[temperature] == got
        assert set().union(*bands.values()) == set(cooling)
        assert sum(len(b) for b in bands.values()) == len(cooling)
        for lead in cooling:
            _, fit, e, as_of, hl = cooling[lead]
            now_score = formula(fit, e, as_of, hl, first)
            band = "hot" if now_score >= 20 else "warm" if now_score >= 10 else "cold"
            if abs(now_score - 10) > 1e-6 and abs(now_score - 20) > 1e-6:
                assert lead in bands[band]


# ---------------------------------------------------------------- filters and bad values


async def test_filters_by_stage_owner_stall_and_entry(h: Harness) -> None:
    a, b, c, d = (uuid4() for _ in range(4))
    await h.feed(
        captured(a, at=T0),
        captured(b, at=T0 + DAY),
        activity(b, "page_view", T0 + DAY),  # interest
        captured(c, at=T0 + 2 * DAY),
        activity(c, "pricing_viewed", T0 + 2 * DAY),  # desire, stalls after 14 days
        captured(d, at=T0 + 3 * DAY),
        captured(uuid4(), funnel_id="subscription", at=T0),  # another funnel
    )
    async with api(h) as (client, clock):
        clock.pin(T0 + 10 * DAY)
        assert (await client.put(f"/v1/leads/{b}/owner", json={"owner": "ana"})).status_code == 200
        assert (await client.put(f"/v1/leads/{c}/owner", json={"owner": "ana"})).status_code == 200

        async def ids(**params: Any) -> set[UUID]:
            response = await client.get(
                "/v1/leads", params={"funnel_id": "digital-sales", **params}
            )
            assert response.status_code == 200, response.text
            return {UUID(i["lead_id"]) for i in response.json()["items"]}

        assert await ids() == {a, b, c, d}
        assert await ids(stage="awareness") == {a, d}
        assert await ids(stage="desire", sort="entered_at") == {c}
        assert await ids(owner="ana") == {b, c}
        assert await ids(owner="ana", stage="interest") == {b}
        assert await ids(owner="ben") == set()
        assert await ids(entered_after=(T0 + DAY).isoformat()) == {b, c, d}
        assert await ids(entered_before=(T0 + DAY).isoformat(), sort="-entered_at") == {a}
        assert await ids(stalled="true") == set()
        clock.pin(T0 + 17 * DAY)  # desire's 14 days have passed for c; the others have 30
        assert await ids(stalled="true") == {c}
        assert await ids(stalled="false") == {a, b, d}
        clock.pin(T0 + 40 * DAY)
        assert await ids(stalled="true", owner="ana") == {b, c}
        query = {"funnel_id": "digital-sales", "owner": "ana", "stage": "desire"}
        item = (await client.get("/v1/leads", params=query)).json()
        [only] = item["items"]
        assert set(only) == {"lead_id", "funnel_id", "stage", "entered_at", "score",
                             "temperature", "owner", "timer_due_at"}  # fmt: skip
        assert (only["owner"], only["stage"], only["funnel_id"]) == (
            "ana",
            "desire",
            "digital-sales",
        )
        assert only["timer_due_at"].startswith((T0 + 16 * DAY).date().isoformat())


async def test_test_leads_are_moved_but_listed_only_when_asked_for(h: Harness) -> None:
    """A test lead (decision 0032) keeps its journey, yet stays out of the work queue unless
    `test=true` asks for the test leads alone; an erasure forgets the mark with the rest."""
    real, trial, late = uuid4(), uuid4(), uuid4()
    await h.feed(
        captured(real, at=T0),
        lead_captured_v2(lead_id=trial, captured_at=T0, test=True),
        activity(trial, "page_view", T0 + DAY),  # still moved: interest
        # Its activity first, the test capture after (another topic): marked all the same.
        activity(late, "page_view", T0 + DAY),
        lead_captured_v2(lead_id=late, captured_at=T0, test=True),
        # A later real post of a test lead does not clear the mark.
        LeadUpdated(lead_id=trial, qualification={"budget": "yes"}, updated_at=T0 + 2 * DAY),
    )
    assert await h.count("test_leads", trial) == 1
    assert await h.count("test_leads", real) == 0
    async with api(h) as (client, clock):
        clock.pin(T0 + 3 * DAY)

        async def listed(**params: Any) -> dict[UUID, str]:
            response = await client.get(
                "/v1/leads", params={"funnel_id": "digital-sales", **params}
            )
            assert response.status_code == 200, response.text
            return {UUID(i["lead_id"]): i["stage"] for i in response.json()["items"]}

        assert await listed() == {real: "awareness"}
        assert await listed(sort="entered_at") == {real: "awareness"}
        assert await listed(test="true") == {trial: "interest", late: "interest"}
        assert await listed(test="true", stage="interest", sort="-entered_at") == {
            trial: "interest",
            late: "interest",
        }
        assert await listed(test="false", stage="interest") == {}
        journey = await client.get(f"/v1/leads/{trial}/journey")
        assert journey.status_code == 200
        assert (journey.json()["current_stage"], journey.json()["test"]) == ("interest", True)
        assert (await client.get(f"/v1/leads/{real}/journey")).json()["test"] is False
        bad = await client.get("/v1/leads", params={"funnel_id": "digital-sales", "test": "x"})
        assert bad.status_code == 422
        assert "test" in bad.text
    await h.feed(LeadErased(lead_id=trial, request_id=uuid4(), erased_at=T0 + 4 * DAY))
    assert await h.count("test_leads", trial) == 0


async def test_a_merged_person_is_a_test_lead_only_when_both_leads_were(h: Harness) -> None:
    """A test lead merged with a real one is a real person, back in the work queue whichever
    of the two survives; two test leads merged stay out of it. A lead merged into another is
    listed no more (its person is the survivor); an erasure forgets the merge too."""
    tried, bought, real, late_try, both_a, both_b = (uuid4() for _ in range(6))
    at = T0 + DAY

    def merge(survivor: UUID, other: UUID) -> LeadMerged:
        return LeadMerged(
            lead_id=survivor, merged_lead_id=other, reason="manual", actor=None, merged_at=at
        )

    await h.feed(
        lead_captured_v2(lead_id=tried, captured_at=T0, test=True),
        captured(bought, at=T0),
        captured(real, at=T0),
        lead_captured_v2(lead_id=late_try, captured_at=T0, test=True),
        lead_captured_v2(lead_id=both_a, captured_at=T0, test=True),
        lead_captured_v2(lead_id=both_b, captured_at=T0, test=True),
    )
    await h.feed(merge(tried, bought), merge(real, late_try), merge(both_a, both_b))
    assert await h.count("test_leads", tried) == 0
    assert await h.count("test_leads", real) == 0
    assert await h.count("test_leads", both_a) == 1
    async with api(h) as (client, clock):
        clock.pin(T0 + 2 * DAY)
        listed = await client.get("/v1/leads", params={"funnel_id": "digital-sales"})
        assert listed.status_code == 200, listed.text
        assert {UUID(i["lead_id"]) for i in listed.json()["items"]} == {tried, real}
        tests = await client.get("/v1/leads", params={"funnel_id": "digital-sales", "test": "true"})
        assert {UUID(i["lead_id"]) for i in tests.json()["items"]} == {both_a}
    assert await h.count("merged_leads", bought) == 1
    await h.feed(LeadErased(lead_id=bought, request_id=uuid4(), erased_at=T0 + 3 * DAY))
    assert await h.count("merged_leads", bought) == 0


async def test_bad_values_are_422_naming_the_field_and_unknowns_404(h: Harness) -> None:
    await h.feed(captured(uuid4(), at=T0))
    async with api(h) as (client, _):
        base: dict[str, Any] = {"funnel_id": "digital-sales"}
        cases: tuple[tuple[dict[str, Any], str], ...] = (
            ({}, "funnel_id"),
            ({**base, "limit": 201}, "limit"),
            ({**base, "limit": 0}, "limit"),
            ({**base, "after": "not-a-cursor"}, "after"),
            ({**base, "temperature": "lukewarm"}, "temperature"),
            ({**base, "sort": "-owner"}, "sort"),
            ({**base, "stalled": "maybe"}, "stalled"),
            ({**base, "entered_after": "yesterday"}, "entered_after"),
            ({**base, "entered_before": "2026-01-01T00:00:00"}, "entered_before"),
            ({**base, "stage": "nirvana"}, "stage"),
        )
        for params, field in cases:
            response = await client.get("/v1/leads", params=params)
            assert response.status_code == 422, (params, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["errors"][0]["field"] == field, params
        assert (await client.get("/v1/leads", params={**base, "limit": 200})).status_code == 200
        # A cursor of one sort is refused by another.
        await h.feed(captured(uuid4(), at=T0))
        first = (await client.get("/v1/leads", params={**base, "limit": 1})).json()
        other = await client.get(
            "/v1/leads", params={**base, "sort": "entered_at", "after": first["next_after"]}
        )
        assert (other.status_code, other.json()["errors"][0]["field"]) == (422, "after")
        unknown = await client.get("/v1/leads", params={"funnel_id": "no-such"})
        assert (unknown.status_code, unknown.json()["errors"][0]["field"]) == (404, "funnel_id")
        nobody = uuid4()
        assert (await client.get(f"/v1/leads/{nobody}/journey")).status_code == 404
        put = await client.put(f"/v1/leads/{nobody}/owner", json={"owner": "ana"})
        assert put.status_code == 404
        assert put.json()["errors"][0]["field"] == "lead_id"
    async with api(h, READER) as (reader, _):
        assert (await reader.get("/v1/leads", params=base)).status_code == 200
        lead = await h.pool.fetchval("SELECT lead_id FROM lead_stages LIMIT 1")
        refused = await reader.put(f"/v1/leads/{lead}/owner", json={"owner": "ana"})
        assert refused.status_code == 403


# ---------------------------------------------------------------- owners


async def _counts(h: Harness) -> tuple[int, int, int]:
    return (
        await h.pool.fetchval("SELECT count(*) FROM outbox"),
        await h.pool.fetchval("SELECT count(*) FROM transitions"),
        await h.pool.fetchval("SELECT sum(version) FROM lead_stages"),
    )


async def test_owners_are_key_names_set_by_a_key_and_travel_in_the_events(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, at=T0))
    async with api(h, BEN) as (client, clock):
        clock.pin(T0 + DAY)
        url = f"/v1/leads/{lead}/owner"
        before = await _counts(h)
        for body in ({"owner": "nobody"}, {"owner": ""}, {"owner": 3}, {}, {"owner": "x" * 300}):
            bad = await client.put(url, json=body)
            assert bad.status_code == 422, body
            assert bad.json()["errors"][0]["field"] == "owner", body
        assert await _counts(h) == before  # a refused request writes nothing

        version = (await client.get(f"/v1/leads/{lead}/journey")).json()["version"]
        ok = await client.put(url, json={"owner": "ana"})
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"lead_id": str(lead), "owner": "ana", "version": version + 1,
                             "changed": True}  # fmt: skip
        assert ok.headers["etag"] == f'"{version + 1}"'
        same = await client.put(url, json={"owner": "ana"})  # no change: no event, no version
        assert (same.json()["version"], same.json()["changed"]) == (version + 1, False)
        admin = await client.put(url, json={"owner": "admin"})
        assert admin.json()["owner"] == "admin"
        released = await client.put(url, json={"owner": None})
        assert (released.status_code, released.json()["owner"]) == (200, None)
        await client.put(url, json={"owner": "ana"})
        journey = (await client.get(f"/v1/leads/{lead}/journey")).json()
        assert (journey["owner"], journey["version"]) == ("ana", version + 4)

    assigned = await h.emitted("funnel.lead.owner-assigned.v1")
    changed = await h.emitted("funnel.lead.owner-changed.v1")
    assert [(c["owner"], c["actor"]) for c in assigned] == [
        ("ana", "ben"), ("admin", "ben"), (None, "ben"), ("ana", "ben")
    ]  # fmt: skip
    assert [(c["owner"], c["previous_owner"], c["actor"]) for c in changed] == [
        ("ana", None, "ben"), ("admin", "ana", "ben"), (None, "admin", "ben"), ("ana", None, "ben")
    ]  # fmt: skip
    assert changed[0]["changed_at"].startswith((T0 + DAY).date().isoformat())
    topics = await h.pool.fetch(
        "SELECT DISTINCT event_type, topic FROM outbox WHERE event_type LIKE 'funnel.lead.owner%'"
    )
    assert {(r["event_type"], r["topic"]) for r in topics} == {
        ("funnel.lead.owner-assigned.v1", "funnel.stage-commands"),
        ("funnel.lead.owner-changed.v1", "funnel.stage-events"),
    }
    # The owner travels in what the lead's next events emit.
    await h.feed(activity(lead, "pricing_viewed", T0 + 2 * DAY))
    [stage_changed] = (await h.emitted("funnel.stage.changed.v1"))[-1:]
    [scored] = (await h.emitted("funnel.lead.scored.v1"))[-1:]
    assert (stage_changed["to_stage"], stage_changed["owner"]) == ("desire", "ana")
    assert scored["owner"] == "ana"


# ---------------------------------------------------------------- ETag and If-Match


async def test_moves_and_owner_changes_with_a_stale_if_match_are_412_and_write_nothing(
    h: Harness,
) -> None:
    lead = uuid4()
    await h.feed(captured(lead, at=T0), activity(lead, "page_view", T0))
    async with api(h, ANA) as (client, clock):
        clock.pin(T0 + DAY)
        journey = await client.get(f"/v1/leads/{lead}/journey")
        version = journey.json()["version"]
        assert journey.headers["etag"] == f'"{version}"'
        assert journey.json()["current_stage"] == "interest"
        # A colleague's event lands in between: the version moves on.
        await h.feed(activity(lead, "pricing_viewed", T0 + DAY))
        current = (await client.get(f"/v1/leads/{lead}/journey")).json()
        assert current["version"] > version
        before = await _counts(h)
        move = {"to_stage": "action", "reason": "paid by phone", "actor": "someone else"}
        stale = await client.post(
            f"/v1/leads/{lead}/transitions", json=move, headers={"If-Match": f'"{version}"'}
        )
        assert stale.status_code == 412, stale.text
        assert stale.headers["content-type"] == "application/problem+json"
        body = stale.json()
        assert (body["current_stage"], body["current_version"]) == ("desire", current["version"])
        assert stale.headers["etag"] == f'"{current["version"]}"'
        weak = await client.post(
            f"/v1/leads/{lead}/transitions",
            json=move,
            headers={"If-Match": f'W/"{current["version"]}"'},
        )
        assert weak.status_code == 412
        owner = await client.put(
            f"/v1/leads/{lead}/owner", json={"owner": "ana"}, headers={"If-Match": '"1"'}
        )
        assert (owner.status_code, owner.json()["current_version"]) == (412, current["version"])
        assert await _counts(h) == before  # nothing written

        moved = await client.post(
            f"/v1/leads/{lead}/transitions",
            json=move,
            headers={"If-Match": f'"{current["version"]}"'},
        )
        assert moved.status_code == 201, moved.text
        assert moved.json()["actor"] == "ana"  # the key's name, not the body's
        after = (await client.get(f"/v1/leads/{lead}/journey")).json()
        assert after["version"] == current["version"] + 1
        assert after["transitions"][-1]["actor"] == "ana"
        taken = await client.put(
            f"/v1/leads/{lead}/owner", json={"owner": "ben"}, headers={"If-Match": "*"}
        )
        assert (taken.status_code, taken.json()["version"]) == (200, after["version"] + 1)
        # Without If-Match a move behaves as before.
        free = await client.post(
            f"/v1/leads/{lead}/transitions", json={"to_stage": "loyalty", "reason": "again"}
        )
        assert free.status_code == 201, free.text
        unknown = await client.post(
            f"/v1/leads/{uuid4()}/transitions", json=move, headers={"If-Match": '"1"'}
        )
        assert unknown.status_code == 404
    [changed] = [c for c in await h.emitted("funnel.stage.changed.v1") if c["actor"] == "ana"][:1]
    assert changed["to_stage"] == "action"
    updated = LeadUpdated(lead_id=lead, qualification={"budget": "yes"}, updated_at=T0 + 2 * DAY)
    await h.feed(updated)
    assert (await h.emitted("funnel.lead.scored.v1"))[-1]["owner"] == "ben"


# ---------------------------------------------------------------- the migration's backfill


async def test_the_migration_backfills_half_lives_and_decay_keys(
    infra: Stack, tmp_path: Path
) -> None:
    """Rows written before migration 0003 get their funnel version's half-life and the key."""
    for old in sorted(MIGRATIONS.glob("000[12]_*.sql")):
        shutil.copy(old, tmp_path / old.name)
    dsn = await infra.postgres.create_database("t")
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, "tracker", tmp_path)
        await conn.execute("SET search_path TO tracker")
        await conn.execute(
            """INSERT INTO funnel_definitions (funnel_id, version, status, format, source,
                   created_by, published_at)
               VALUES ('digital-sales', 2, 'published', 'yaml', $1, 'ana', now()),
                      ('json-funnel', 1, 'published', 'json', $2, 'ana', now())""",
            "id: digital-sales\nscoring:\n  half_life_days: 3.5\n",
            '{"id": "json-funnel", "scoring": {"half_life_days": 7}}',
        )
        rows = [  # lead, funnel, version, engagement, as_of, expected half-life in days
            (uuid4(), "digital-sales", 1, 12.5, T0, 14),
            (uuid4(), "digital-sales", 2, 40.0, T0 - DAY, 3.5),
            (uuid4(), "subscription", 1, 0.0, T0, 21),
            (uuid4(), "b2b-sales-cycle", 1, -6.0, T0, 30),
            (uuid4(), "json-funnel", 1, 3.0, T0, 7),
            (uuid4(), "no-such-funnel", 1, 1.0, T0, 14),
        ]
        await conn.executemany(
            """INSERT INTO lead_stages (lead_id, funnel_id, funnel_version, stage, entered_at,
                   fit_score, engagement_score, score, as_of)
               VALUES ($1, $2, $3, 'awareness', $4, 5, $5::float8, 5 + $5::float8, $4)""",
            [(lead, funnel, v, at, e) for lead, funnel, v, e, at, _ in rows],
        )
        await migrations.apply(conn, "tracker", MIGRATIONS)
        got = {
            r["lead_id"]: r
            for r in await conn.fetch(
                "SELECT lead_id, half_life_seconds, decay_sign, decay_key, version, owner"
                " FROM lead_stages"
            )
        }
    finally:
        await conn.close()
    for lead, _, _, engagement, at, days in rows:
        row = got[lead]
        h = days * 86400.0
        want = decay_key(engagement, at, h)
        assert row["half_life_seconds"] == h, lead
        assert (row["decay_sign"], row["version"], row["owner"]) == (want.sign, 1, None)
        assert row["decay_key"] == pytest.approx(want.key, rel=1e-12)
