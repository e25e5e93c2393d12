"""A merge's result must not depend on which side of it the two leads' events are projected.

Kafka topics are consumed independently (and a rebuild replays them in any interleaving), so
an event of either lead may be projected before or after the `funnel.lead.merged.v1` that
folds them: `project` applies an event of the other lead projected after the merge to the
survivor, one projected before it is folded in by `fold`. Both paths must give the same
contributions, or a rebuild's numbers differ from the live ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadCaptured,
    StageChanged,
    Utm,
)
from funnel_contracts.examples import lead_captured_v2
from reporting.projection.models.contributions import contributions
from reporting.projection.models.lead_state import LeadState, apply, fold

SURVIVOR = UUID("00000000-0000-4000-8000-00000000000a")
OTHER = UUID("00000000-0000-4000-8000-00000000000b")
T0 = datetime(2026, 9, 10, 8, 15, tzinfo=UTC)
POSITIONS = {"awareness": 0, "interest": 1, "desire": 2, "action": 3}


def _captured(lead: UUID, at: datetime, source: str) -> LeadCaptured:
    return LeadCaptured(
        lead_id=lead,
        submission_id=UUID(int=lead.int + 100, version=4),
        form_id="demo",
        funnel_id="digital-sales",
        email=f"{lead.hex[-4:]}@example.com",
        captured_at=at,
        utm=Utm(source=source),
    )


def _stage(lead: UUID, name: str, at: datetime, prev: str | None = None) -> StageChanged:
    return StageChanged(
        lead_id=lead,
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=prev,
        to_stage=name,
        to_stage_position=POSITIONS[name],
        reason="t",
        changed_at=at,
    )


def _activity(lead: UUID, kind: str, at: datetime, n: int, amount: str | None = None) -> EventData:
    return ActivityRecorded(
        lead_id=lead,
        activity_id=UUID(int=n, version=4),
        activity_type=kind,
        occurred_at=at,
        recorded_at=at,
        amount=Decimal(amount) if amount else None,
        currency="EUR" if amount else None,
        order_id=f"o-{n}" if kind == "purchase_completed" else None,
    )


def _replay(survivor: list[EventData], other: list[EventData], late: list[EventData]) -> LeadState:
    """The survivor's state when `survivor` and `other` were projected before the merge and
    `late` after it, as `project` does: an event of the other lead after the merge goes to
    the survivor, but for its stage moves (the tracker's `merged` move says where the person
    is); the survivor's own late events apply to it."""
    s, o = LeadState(), LeadState()
    for e in survivor:
        s = apply(s, e)
    for e in other:
        o = apply(o, e)
    s, o = fold(s, o, SURVIVOR)
    for e in late:
        if e.lead_id == OTHER and isinstance(e, StageChanged):
            o = apply(o, e)
        else:
            s = apply(s, e)
    assert contributions(o) == {}
    return s


def _base() -> tuple[list[EventData], list[EventData]]:
    survivor = [
        _captured(SURVIVOR, T0, "fair"),
        _stage(SURVIVOR, "awareness", T0),
        _activity(SURVIVOR, "purchase_completed", T0 + timedelta(days=1), 1, "30.00"),
    ]
    other = [_captured(OTHER, T0 + timedelta(days=2), "ads"), _stage(OTHER, "awareness", T0)]
    return survivor, other


def test_the_other_leads_orders_and_visits_count_the_same_on_either_side_of_the_merge() -> None:
    survivor, other = _base()
    moved = [
        _activity(OTHER, "purchase_completed", T0 + timedelta(days=3), 2, "19.00"),
        _activity(OTHER, "subscription_renewed", T0 + timedelta(days=33), 3, "19.00"),
        _activity(OTHER, "pricing_viewed", T0 + timedelta(days=2, hours=1), 4),
    ]
    before = _replay(survivor, other + moved, [])
    after = _replay(survivor, other, moved)
    assert contributions(before) == contributions(after)
    assert len(before.money) == 3


def test_the_other_leads_cancellation_counts_the_same_on_either_side_of_the_merge() -> None:
    survivor, other = _base()
    subscription = [
        _activity(OTHER, "subscription_renewed", T0 + timedelta(days=3), 5, "19.00"),
        _activity(OTHER, "subscription_cancelled", T0 + timedelta(days=20), 6),
    ]
    before = _replay(survivor, other + subscription, [])
    after = _replay(survivor, other + subscription[:1], subscription[1:])
    assert after.cancellations  # projected after the merge, the survivor's subscription ends
    assert contributions(before) == contributions(after)


def test_the_survivors_stage_moves_count_the_same_on_either_side_of_the_merge() -> None:
    survivor, other = _base()
    other = [*other, _stage(OTHER, "interest", T0 + timedelta(days=3), "awareness")]
    moves = [e for e in survivor if isinstance(e, StageChanged)]
    rest = [e for e in survivor if not isinstance(e, StageChanged)]
    first = _replay(survivor, other, [])
    late = _replay(rest, other, moves)
    assert [e.stage for e in first.entries] == ["awareness"]
    assert contributions(first) == contributions(late)


def _test_capture(lead: UUID, at: datetime) -> EventData:
    return lead_captured_v2(
        lead_id=lead,
        submission_id=UUID(int=lead.int + 100, version=4),
        captured_at=at,
        utm=Utm(source="test"),
        test=True,
    )


@pytest.mark.parametrize(
    ("survivor_test", "other_test", "counted"),
    [(True, False, True), (False, True, True), (True, True, False), (False, False, True)],
)
def test_a_merged_person_is_a_test_lead_only_when_every_capture_was(
    survivor_test: bool, other_test: bool, counted: bool
) -> None:
    """A test lead merged with a real one is a real person, counted; two test leads stay a
    test lead. The same on either side of the merge, the other's capture before it or after."""
    capture = {SURVIVOR: survivor_test, OTHER: other_test}

    def captured(lead: UUID, at: datetime) -> EventData:
        return _test_capture(lead, at) if capture[lead] else _captured(lead, at, "fair")

    survivor = [captured(SURVIVOR, T0), _stage(SURVIVOR, "awareness", T0)]
    other_capture = captured(OTHER, T0 + timedelta(days=2))
    other_move = _stage(OTHER, "awareness", T0 + timedelta(days=2))
    before = _replay(survivor, [other_capture, other_move], [])
    after = _replay(survivor, [other_move], [other_capture])
    for state in (before, after):
        assert state.test is not counted
        assert bool(contributions(state)) is counted
    assert contributions(before) == contributions(after)


def test_a_state_stored_before_real_captures_were_kept_counts_its_capture_as_real() -> None:
    """A lead captured (not a test) and stored before `real` existed, then merged with a test
    lead: the person is real."""
    stored = apply(LeadState(), _captured(SURVIVOR, T0, "fair"))
    legacy = LeadState.model_validate_json(stored.model_dump_json(exclude={"real"}))
    assert legacy.real is False
    assert legacy.has_real_capture()
    other = apply(LeadState(), _test_capture(OTHER, T0 + timedelta(days=1)))
    merged, _ = fold(legacy, other, SURVIVOR)
    assert merged.test is False
    assert merged.real is True
