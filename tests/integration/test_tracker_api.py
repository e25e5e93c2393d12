"""stage-tracker's API on the real PostgreSQL: funnel definitions and manual moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from funnel_devstack.stack import Stack
from funnel_servicekit.auth import new_api_key
from tests.integration.tracker_harness import T0, Harness, activity, captured, tracker_harness

pytestmark = pytest.mark.integration

READER, READER_ENTRY = new_api_key("reader", ["leads:read"])


@pytest.fixture
async def h(infra: Stack, fresh_dsn: str) -> AsyncIterator[Harness]:
    async with tracker_harness(fresh_dsn, infra.kafka_bootstrap, api_keys=[READER_ENTRY]) as hh:
        yield hh


V2 = """\
id: digital-sales
name: Digital sales, with a showroom
stages:
  - name: awareness
  - name: interest
    enter_when:
      - event: page_view
  - name: showroom
    enter_when:
      - event: showroom_visit
  - name: action
    enter_when:
      - event: purchase_completed
"""

BROKEN = """\
id: digital-sales
name: broken
stages:
  - name: awareness
    stall_after_days: -3
  - name: interest
    enter_when:
      - from: [nowhere]
"""


async def test_funnels_are_listed_read_validated_drafted_and_published(h: Harness) -> None:
    async with h.api() as api:
        listed = (await api.get("/v1/funnels")).json()["funnels"]
        assert {f["id"]: f["current_version"] for f in listed} == {
            "b2b-sales-cycle": 1,
            "digital-sales": 1,
            "subscription": 1,
        }
        one = (await api.get("/v1/funnels/subscription")).json()
        assert one["stages"][-2:] == ["re-evaluation", "repurchase"]
        assert one["status"] == "published"

        bad = await api.post("/v1/funnels/validate", json={"source": BROKEN})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert {(e["field"], e["line"]) for e in bad.json()["errors"]} == {
            ("stages.0.stall_after_days", 5),
            ("stages.1.enter_when.0", 8),
            ("stages.1.enter_when.0.from.0", 8),
        }
        assert (await api.post("/v1/funnels/validate", json={"source": V2})).json()["valid"]
        refused = await api.post("/v1/funnels/digital-sales/drafts", json={"source": BROKEN})
        assert refused.status_code == 422

        lead_v1 = uuid4()
        await h.feed(captured(lead_v1))
        draft = await api.post("/v1/funnels/digital-sales/drafts", json={"source": V2})
        assert (draft.status_code, draft.json()["version"]) == (201, 2)
        assert (await api.get("/v1/funnels/digital-sales")).json()["version"] == 1  # a draft
        published = await api.post("/v1/funnels/digital-sales/versions/2/publish")
        assert published.status_code == 200
        again = await api.post("/v1/funnels/digital-sales/versions/2/publish")
        assert again.status_code == 409
        assert (await api.post("/v1/funnels/digital-sales/versions/1/publish")).status_code == 409

        lead_v2 = uuid4()
        await h.feed(captured(lead_v2), activity(lead_v2, "showroom_visit", T0))
        await h.feed(activity(lead_v1, "showroom_visit", T0))  # v1 has no showroom
        j2 = (await api.get(f"/v1/leads/{lead_v2}/journey")).json()
        j1 = (await api.get(f"/v1/leads/{lead_v1}/journey")).json()
        assert (j2["funnel_version"], j2["current_stage"]) == (2, "showroom")
        assert (j1["funnel_version"], j1["current_stage"]) == (1, "awareness")

        moved = await api.post(
            f"/v1/leads/{lead_v1}/transitions",
            json={
                "to_stage": "showroom",
                "reason": "new funnel",
                "actor": "ana",
                "funnel_version": 2,
            },
        )
        assert moved.status_code == 201, moved.text
        j1 = (await api.get(f"/v1/leads/{lead_v1}/journey")).json()
        assert (j1["funnel_version"], j1["current_stage"]) == (2, "showroom")


async def test_manual_moves_are_recorded_or_refused_with_the_reason(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead), activity(lead, "pricing_viewed", T0))
    async with h.api() as api:
        url = f"/v1/leads/{lead}/transitions"
        ok = await api.post(
            url, json={"to_stage": "action", "reason": "paid by invoice", "actor": "ana"}
        )
        assert ok.status_code == 201, ok.text
        assert (ok.json()["from_stage"], ok.json()["to_stage"]) == ("desire", "action")
        back = await api.post(url, json={"to_stage": "interest", "reason": "x", "actor": "ana"})
        assert back.status_code == 409
        assert "does not allow moving back" in back.json()["detail"]
        unknown = await api.post(url, json={"to_stage": "nirvana", "reason": "x", "actor": "ana"})
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"] == "to_stage"
        missing = await api.post(url, json={"to_stage": "loyalty", "actor": "ana"})
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "reason"
        nobody = await api.post(
            f"/v1/leads/{uuid4()}/transitions",
            json={"to_stage": "action", "reason": "x", "actor": "a"},
        )
        assert nobody.status_code == 404
        journey = (await api.get(f"/v1/leads/{lead}/journey")).json()
        last = journey["transitions"][-1]
        # The actor is the calling key's name ("admin" here), never the body's.
        assert (last["to_stage"], last["actor"], last["reason"], last["cause_event_type"]) == (
            "action",
            "admin",
            "paid by invoice",
            "funnel.stage.move-requested.v1",
        )
    changed = await h.emitted("funnel.stage.changed.v1")
    assert changed[-1]["actor"] == "admin"
    # The move is also a command in the tracker's own input log (what a replay makes again);
    # refused moves leave none.
    [command] = await h.emitted("funnel.stage.move-requested.v1")
    assert (command["kind"], command["to_stage"], command["actor"]) == ("manual", "action", "admin")
    assert command["lead_id"] == str(lead)
    assert await h.pool.fetchval(
        "SELECT topic FROM outbox WHERE event_type = 'funnel.stage.move-requested.v1'"
    ) == ("funnel.stage-commands")
    # Its id is a seen signal of the lead: read back live, the command changes nothing.
    assert await h.pool.fetchval(
        "SELECT (signal #>> '{}')::jsonb->>'kind' FROM lead_signals"
        " WHERE lead_id = $1 AND event_id = $2",
        lead,
        last["cause_event_id"],
    ) == ("move_requested")


async def test_keys_and_scopes(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead))
    async with h.api(key="") as anonymous:
        assert (await anonymous.get(f"/v1/leads/{lead}/journey")).status_code == 401
        assert (await anonymous.get("/v1/funnels")).status_code == 401
    async with h.api(key=READER) as reader:
        assert (await reader.get(f"/v1/leads/{lead}/journey")).status_code == 200
        assert (await reader.get("/v1/funnels")).status_code == 200
        body = {"to_stage": "interest", "reason": "x", "actor": "a"}
        assert (await reader.post(f"/v1/leads/{lead}/transitions", json=body)).status_code == 403
        assert (await reader.post("/v1/funnels/validate", json={"source": V2})).status_code == 403
        assert (await reader.get("/v1/funnels/nope")).status_code == 404
