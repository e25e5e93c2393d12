"""A person's timeline (`GET /v1/leads/{lead_id}/timeline`) on the real topics and the real
service: every kind of item with its fields, newest first, pages that cover every item once,
duplicates once, late events in place, erasure (410, rows gone), the rebuild's identical
table, 404 and 422."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadCaptured,
    LeadErased,
    LeadOwnerChanged,
    LeadUpdated,
    StageChanged,
    TaskUpdated,
    TouchClicked,
    TouchOpened,
    TouchSent,
    Utm,
    examples,
)
from funnel_devstack.stack import Stack
from tests.integration.kit_support import eventually
from tests.integration.reporting_support import publish

pytestmark = pytest.mark.integration

T0 = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
FUNNEL = "digital-sales"


def _h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _stage(lead: UUID, to: str, at: datetime, prev: str | None, **extra: Any) -> StageChanged:
    return StageChanged(
        lead_id=lead,
        funnel_id=FUNNEL,
        funnel_version=1,
        from_stage=prev,
        to_stage=to,
        to_stage_position=["awareness", "interest", "desire", "action"].index(to),
        reason=extra.pop("reason", "rule"),
        changed_at=at,
        **extra,
    )


def _activity(
    lead: UUID, kind: str, at: datetime, activity_id: UUID | None = None, **extra: Any
) -> ActivityRecorded:
    return examples.activity_recorded(
        lead_id=lead,
        activity_id=activity_id or uuid4(),
        activity_type=kind,
        occurred_at=at,
        **extra,
    )


def _person(lead: UUID) -> tuple[list[EventData], dict[str, EventData]]:
    """One person's life touching every kind of item; the open comes before its send."""
    touch, task = uuid4(), uuid4()
    named: dict[str, EventData] = {
        "captured": LeadCaptured(
            lead_id=lead,
            submission_id=uuid4(),
            form_id="demo",
            funnel_id=FUNNEL,
            email="ada@example.com",
            first_name="Ada",
            phone="+46701234567",
            utm=Utm(source="google", medium="cpc", campaign="brand"),
            landing_page="https://shop.example/start?email=ada@example.com",
            captured_at=T0,
        ),
        "entered": _stage(
            lead,
            "awareness",
            T0,
            None,
            reason="captured",
            cause_event_type="funnel.lead.captured.v1",
        ),
        "page_view": _activity(
            lead, "page_view", _h(1), page_url="https://shop.example/pricing?ref=ada@example.com"
        ),
        "opened": TouchOpened(lead_id=lead, touch_id=touch, opened_at=_h(3)),
        "sent": TouchSent(
            lead_id=lead,
            touch_id=touch,
            playbook="nurture",
            channel="email",
            template="welcome",
            funnel_id=FUNNEL,
            stage="awareness",
            sent_at=_h(2),
        ),
        "clicked": TouchClicked(
            lead_id=lead,
            touch_id=touch,
            url="https://shop.example/offer?t=secret",
            clicked_at=_h(4),
        ),
        "owner": LeadOwnerChanged(
            lead_id=lead,
            funnel_id=FUNNEL,
            owner="ana",
            previous_owner=None,
            actor="admin",
            changed_at=_h(20),
        ),
        "task_open": TaskUpdated(
            lead_id=lead,
            task_id=task,
            title="Call Ada",
            status="open",
            assignee="ana",
            due_at=_h(48),
            playbook="hot-call",
            version=1,
            updated_at=_h(24),
        ),
        "call": _activity(
            lead,
            "call_logged",
            _h(25),
            actor="ana",
            properties={"outcome": "reached", "text": "wants a demo"},
        ),
        "moved": _stage(lead, "interest", _h(26), "awareness", reason="manual", actor="ana"),
        "task_done": TaskUpdated(
            lead_id=lead,
            task_id=task,
            title="Call Ada",
            status="done",
            assignee="ana",
            due_at=_h(48),
            playbook="hot-call",
            version=2,
            actor="ana",
            updated_at=_h(27),
        ),
        "meeting": _activity(
            lead, "meeting_held", _h(50), actor="ben", properties={"outcome": "demo given"}
        ),
        # At one instant: the item keys (their activity ids here) break the tie.
        "event": _activity(
            lead, "event_attended", _h(72), UUID(f"00000000{lead.hex[8:]}"), actor="ben"
        ),
        "note": _activity(
            lead,
            "note_added",
            _h(72),
            UUID(f"ffffffff{lead.hex[8:]}"),
            actor="ana",
            properties={"text": "budget in Q4"},
        ),
        "updated": LeadUpdated(
            lead_id=lead,
            submission_id=uuid4(),
            form_id="ebook",
            email="ada@example.com",
            last_touch_utm=Utm(source="newsletter", medium="email", campaign="weekly"),
            updated_at=_h(96),
        ),
        "purchase": _activity(
            lead,
            "purchase_completed",
            _h(120),
            amount=Decimal("49.90"),
            currency="EUR",
            order_id="o-1",
        ),
    }
    return list(named.values()), named


def _many(lead: UUID, n: int) -> list[EventData]:
    """n page views, three at every instant (ties broken by the key)."""
    return [
        _activity(lead, "page_view", T0 + timedelta(minutes=i // 3), page_url=f"/p/{i}")
        for i in range(n)
    ]


async def _sql(stack: Stack, query: str, *args: object) -> Any:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def _inbox(stack: Stack, n: int) -> None:
    await eventually(
        lambda: _sql(stack, "SELECT count(*) FROM reporting.inbox"),
        lambda count: count == n,
        timeout=120,
        what=f"{n} events in reporting's inbox",
    )


async def _call(stack: Stack, lead: UUID, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=stack.url("reporting"),
        headers={"Authorization": f"Bearer {stack.admin_api_key}"},
        timeout=30,
    ) as client:
        return await client.get(f"/v1/leads/{lead}/timeline", params=params)


async def _timeline(stack: Stack, lead: UUID, **params: Any) -> dict[str, Any]:
    response = await _call(stack, lead, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _all_pages(stack: Stack, lead: UUID, limit: int) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages, before = 0, None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if before:
            params["before"] = before
        body = await _timeline(stack, lead, **params)
        pages += 1
        assert len(body["items"]) <= limit
        items += body["items"]
        before = body["next_before"]
        if before is None:
            return items, pages


class World:
    def __init__(self) -> None:
        self.ada, self.many, self.gone = uuid4(), uuid4(), uuid4()
        self.ada_events, self.named = _person(self.ada)
        self.many_events = _many(self.many, 250)
        self.gone_events = [
            _stage(self.gone, "awareness", T0, None),
            _activity(self.gone, "call_logged", _h(1), actor="ana", properties={"text": "hi"}),
        ]
        self.published = 0


@pytest.fixture(scope="module")
async def world(module_infra: Stack) -> AsyncIterator[tuple[Stack, World]]:
    stack = module_infra
    w = World()
    await stack._run_command("reporting", "migrate")
    stack.start_service("reporting")
    try:
        await stack.wait_service_ready("reporting")
        events = [*w.ada_events, *w.many_events, *w.gone_events]
        # Three events delivered twice (same event id), as a redelivering producer would.
        await publish(stack, events, duplicates=[0, 5, 20])
        w.published = len(events)
        await _inbox(stack, w.published)
        yield stack, w
    finally:
        stack.stop_service("reporting")


async def test_every_kind_appears_with_its_fields_newest_first(world) -> None:  # type: ignore[no-untyped-def]
    stack, w = world
    body = await _timeline(stack, w.ada)
    assert body["lead_id"] == str(w.ada)
    assert body["next_before"] is None
    items = body["items"]
    print("kinds, newest first:", [i["kind"] for i in items])
    assert [i["kind"] for i in items] == [
        "activity",  # purchase
        "lead_updated",
        "note_added",  # note and event at one instant: the greater key first
        "event_attended",
        "meeting_held",
        "task",  # done
        "stage_changed",
        "call_logged",
        "task",  # open
        "owner_changed",
        "touch_clicked",
        "touch_opened",
        "touch_sent",
        "activity",  # page view
        "lead_captured",
        "stage_changed",  # the entry, at the capture's instant
    ]
    ats = [datetime.fromisoformat(i["at"]) for i in items]
    assert ats == sorted(ats, reverse=True)
    assert len(items) == len(w.ada_events)  # the duplicates once
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_kind.setdefault(item["kind"], []).append(item)
    n = w.named
    assert by_kind["lead_captured"] == [
        {
            "at": T0.isoformat(),
            "kind": "lead_captured",
            "submission_id": str(n["captured"].submission_id),  # type: ignore[attr-defined]
            "form": "demo",
            "source": "form",
            "funnel_id": FUNNEL,
            "utm": {
                "source": "google",
                "medium": "cpc",
                "campaign": "brand",
                "term": None,
                "content": None,
            },
            "landing_page": "shop.example/start",
            "referrer": None,
        }
    ]
    updated = by_kind["lead_updated"][0]
    assert (updated["form"], updated["utm"]["source"]) == ("ebook", "newsletter")
    purchase, page_view = by_kind["activity"]
    assert purchase | {"activity_id": None} == {
        "at": _h(120).isoformat(),
        "kind": "activity",
        "activity_id": None,
        "activity_type": "purchase_completed",
        "page_path": None,
        "amount": "49.90",
        "currency": "EUR",
        "order_id": "o-1",
    }
    assert (page_view["activity_type"], page_view["page_path"]) == (
        "page_view",
        "shop.example/pricing",
    )
    moved, entered = by_kind["stage_changed"]
    assert {k: moved[k] for k in ("from_stage", "to_stage", "reason", "actor")} == {
        "from_stage": "awareness",
        "to_stage": "interest",
        "reason": "manual",
        "actor": "ana",
    }
    assert (entered["reason"], entered["cause_event_type"], entered["actor"]) == (
        "captured",
        "funnel.lead.captured.v1",
        None,
    )
    sent, opened, clicked = (by_kind[k][0] for k in ("touch_sent", "touch_opened", "touch_clicked"))
    assert (sent["playbook"], sent["channel"], sent["stage"]) == ("nurture", "email", "awareness")
    # The open arrived before its send; both responses learned the send's playbook and channel.
    assert (opened["playbook"], opened["channel"]) == ("nurture", "email")
    assert (clicked["playbook"], clicked["channel"], clicked["url"]) == (
        "nurture",
        "email",
        "shop.example/offer",
    )
    done, opened_task = by_kind["task"]
    assert {k: done[k] for k in ("title", "status", "assignee", "actor", "version")} == {
        "title": "Call Ada",
        "status": "done",
        "assignee": "ana",
        "actor": "ana",
        "version": 2,
    }
    assert (opened_task["status"], opened_task["actor"], opened_task["playbook"]) == (
        "open",
        None,
        "hot-call",
    )
    call = by_kind["call_logged"][0]
    assert {k: call[k] for k in ("outcome", "text", "actor")} == {
        "outcome": "reached",
        "text": "wants a demo",
        "actor": "ana",
    }
    assert by_kind["meeting_held"][0]["outcome"] == "demo given"
    assert by_kind["note_added"][0]["text"] == "budget in Q4"
    assert by_kind["event_attended"][0]["actor"] == "ben"
    owner = by_kind["owner_changed"][0]
    assert (owner["owner"], owner["previous_owner"], owner["actor"]) == ("ana", None, "admin")
    # Nothing of the person's contact details, nor the query strings that carried them.
    leaked = await _sql(
        stack,
        """SELECT count(*) FROM reporting.timeline_timeline
           WHERE fields::text ~ '(@|46701234567|secret)'""",
    )
    assert leaked == 0


async def test_pages_cover_every_item_once_in_order(world) -> None:  # type: ignore[no-untyped-def]
    stack, w = world
    items, pages = await _all_pages(stack, w.many, limit=7)
    print(f"250 items in {pages} pages of 7")
    assert pages == 36
    paths = [i["page_path"] for i in items]
    assert len(paths) == len(set(paths)) == 250
    ats = [i["at"] for i in items]
    assert ats == sorted(ats, reverse=True)
    first = await _timeline(stack, w.many)
    assert len(first["items"]) == 50
    assert first["next_before"]
    biggest = await _timeline(stack, w.many, limit=200)
    assert [i["page_path"] for i in biggest["items"]] == paths[:200]
    # An instant instead of a cursor: strictly before it.
    cut = T0 + timedelta(minutes=10)
    older = await _timeline(stack, w.many, before=cut.isoformat(), limit=200)
    assert [i["page_path"] for i in older["items"]] == [
        p for p, i in zip(paths, items, strict=True) if datetime.fromisoformat(i["at"]) < cut
    ]
    assert len(older["items"]) == 30


async def test_refusals_name_the_field(world) -> None:  # type: ignore[no-untyped-def]
    stack, w = world
    for params, field in (
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"before": "not-a-cursor"}, "before"),
        ({"before": "2026-09-01T10:00:00"}, "before"),  # an instant without its offset
    ):
        response = await _call(stack, w.many, **params)
        assert response.status_code == 422, (params, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field]
    unknown = await _call(stack, uuid4())
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["field"] == "lead_id"
    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
        anonymous = await client.get(f"/v1/leads/{w.many}/timeline")
    assert anonymous.status_code == 401


async def test_a_late_event_lands_in_place_and_a_repeat_changes_nothing(world) -> None:  # type: ignore[no-untyped-def]
    stack, w = world
    before = (await _timeline(stack, w.ada))["items"]
    late = _activity(w.ada, "pricing_viewed", _h(2.5), page_url="https://shop.example/pricing")
    # The same purchase again under a new event id: the same item (its key is the activity's).
    repeat = w.named["purchase"]
    await publish(stack, [late, repeat])
    w.published += 2
    await _inbox(stack, w.published)
    after = (await _timeline(stack, w.ada))["items"]
    assert len(after) == len(before) + 1
    at = [i["at"] for i in after].index(_h(2.5).isoformat())
    assert after[at]["activity_type"] == "pricing_viewed"
    assert after[at - 1]["kind"] == "touch_opened"
    assert after[at + 1]["kind"] == "touch_sent"
    assert [i for i in after if i is not after[at]] == before


async def test_erasure_answers_410_and_leaves_no_row(world) -> None:  # type: ignore[no-untyped-def]
    stack, w = world
    assert len((await _timeline(stack, w.gone))["items"]) == 2
    erasure = LeadErased(lead_id=w.gone, request_id=uuid4(), erased_at=_h(100))
    await publish(stack, [erasure])
    w.published += 1
    await _inbox(stack, w.published)
    rows = "SELECT count(*) FROM reporting.timeline_timeline WHERE lead_id = $1"
    assert await _sql(stack, rows, w.gone) == 0
    gone = await _call(stack, w.gone)
    assert gone.status_code == 410, gone.text
    assert gone.json()["errors"][0]["field"] == "lead_id"
    # A late event of the erased person adds nothing back.
    await publish(stack, [_activity(w.gone, "note_added", _h(101), actor="ana")])
    w.published += 1
    await _inbox(stack, w.published)
    assert await _sql(stack, rows, w.gone) == 0
    assert (await _call(stack, w.gone, limit=5)).status_code == 410


async def test_the_rebuild_writes_the_same_timeline(world) -> None:  # type: ignore[no-untyped-def]
    stack, w = world
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reporting",
        "rebuild",
        "--schema",
        "reporting_timeline_rebuild",
        env={**os.environ, **stack.command_env("reporting")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, out.decode()[-3000:]
    live = "reporting.timeline_timeline"
    rebuilt = "reporting_timeline_rebuild.timeline_timeline"
    differ = await _sql(
        stack,
        f"""SELECT count(*) FROM ((SELECT * FROM {live} EXCEPT SELECT * FROM {rebuilt})
            UNION ALL (SELECT * FROM {rebuilt} EXCEPT SELECT * FROM {live})) d""",  # noqa: S608
    )
    rows = await _sql(stack, f"SELECT count(*) FROM {rebuilt}")  # noqa: S608
    print(f"rebuilt timeline: {rows} rows, {differ} differing from the live table")
    assert differ == 0
    assert rows == len(w.ada_events) + 1 + len(w.many_events)  # the late page view; none erased
