"""The timeline's pure parts: the item each event makes (keys from the event, no contact
details, no query strings), the cursor, and offline touches in the touch-effect rows."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadErased,
    StageChanged,
    TaskUpdated,
    TouchSent,
    examples,
)
from reporting.domain.windows import window_counters
from reporting.projection.models.contributions import contributions
from reporting.projection.models.lead_state import LeadState, apply
from reporting.timeline.models import Before, CursorError, cursor, item_of, parse_before

LEAD = UUID("00000000-0000-4000-8000-000000000001")
T0 = datetime(2026, 9, 10, 8, 15, tzinfo=UTC)


def _stage(name: str, position: int, at: datetime) -> StageChanged:
    return examples.stage_changed(
        lead_id=LEAD, funnel_id="f", to_stage=name, to_stage_position=position, changed_at=at
    )


def _activity(kind: str, at: datetime, **extra: object) -> ActivityRecorded:
    return examples.activity_recorded(lead_id=LEAD, activity_type=kind, occurred_at=at, **extra)


def test_a_capture_keeps_form_source_and_utm_and_no_contact_details() -> None:
    event = examples.lead_captured(
        lead_id=LEAD,
        funnel_id="f",
        phone="+46701234567",
        first_name="Ada",
        landing_page="https://shop.example/lp?email=ada@example.com#x",
        captured_at=T0,
    )
    item = item_of(event)
    assert item is not None
    assert (item.kind, item.key) == ("lead_captured", f"submission:{event.submission_id}")
    assert item.fields["landing_page"] == "shop.example/lp"
    text = repr(item.fields)
    assert "ada" not in text.lower()
    assert "4670" not in text
    assert item_of(LeadErased(lead_id=LEAD, request_id=uuid4(), erased_at=T0)) is None


def test_the_same_event_makes_the_same_item_and_naive_times_are_utc() -> None:
    event = _activity("call_logged", T0.replace(tzinfo=None), actor="ana")
    first, again = item_of(event), item_of(event.model_copy())
    assert first == again
    assert first is not None
    assert first.at == T0
    assert (first.kind, first.fields["actor"]) == ("call_logged", "ana")


def test_a_cursor_reads_back_and_bad_ones_are_refused() -> None:
    at = T0 + timedelta(microseconds=7)
    assert parse_before(cursor(at, "activity:x|y")) == Before(at, "activity:x|y")
    assert parse_before("2026-09-10T08:15:00+02:00") == Before(T0 - timedelta(hours=2))
    for bad in ("", "nonsense", "2026-09-10T08:15:00", cursor(at, "k")[:-3] + "!!!"):
        with pytest.raises(CursorError):
            parse_before(bad)


def test_offline_touches_count_at_the_stage_of_their_moment_in_any_order() -> None:
    events: list[EventData] = [
        _stage("awareness", 0, T0),
        _stage("interest", 1, T0 + timedelta(days=2)),
        _activity("call_logged", T0 + timedelta(days=1)),  # in awareness
        _activity("call_logged", T0 + timedelta(days=1, hours=1)),  # later: the first counts
        _activity("note_added", T0 + timedelta(days=3)),  # in interest
        _activity("meeting_held", T0 - timedelta(days=1)),  # before any stage: not counted
        TouchSent(
            lead_id=LEAD,
            touch_id=uuid4(),
            playbook="nurture",
            channel="email",
            template="t",
            stage="interest",
            sent_at=T0 + timedelta(days=4),
        ),
        _activity(
            "purchase_completed",
            T0 + timedelta(days=5),
            amount=Decimal("10"),
            currency="EUR",
            order_id="o",
        ),
    ]
    results = set()
    for order in itertools.permutations(events[:4] + events[6:]):
        state = LeadState()
        for event in (*order, events[4], events[5]):
            state = apply(state, event)
        rows = {k[1][:3]: v for k, v in contributions(state).items() if k[0] == "touch_effect"}
        results.add(tuple(sorted(rows.items())))
    assert len(results) == 1
    rows = dict(results.pop())
    assert set(rows) == {
        ("f", "awareness", "offline:call_logged"),
        ("f", "interest", "offline:note_added"),
        ("f", "interest", "nurture"),
    }
    assert rows[("f", "awareness", "offline:call_logged")] == (
        1,
        *window_counters(timedelta(days=4)),
    )
    assert rows[("f", "interest", "offline:note_added")] == (1, *window_counters(timedelta(days=2)))


def test_a_team_task_about_a_leak_is_no_persons_timeline_item() -> None:
    leak = uuid4()
    common = {"title": "Funnel leak", "status": "open", "version": 1, "updated_at": T0}
    person = TaskUpdated(lead_id=LEAD, task_id=uuid4(), playbook="hot-lead", **common)  # type: ignore[arg-type]
    team = TaskUpdated(lead_id=leak, leak_id=leak, task_id=uuid4(), playbook="leak-alert", **common)  # type: ignore[arg-type]
    item = item_of(person)
    assert item is not None
    assert (item.lead_id, item.kind) == (LEAD, "task")
    assert item_of(team) is None
