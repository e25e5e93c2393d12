"""Moves at the same instant: reporting follows the tracker's chain of moves, not positions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import UUID

from funnel_contracts import StageChanged
from reporting.projection.models.contributions import contributions
from reporting.projection.models.lead_state import LeadState, apply
from reporting.projection.models.stage_history import StageEntry, in_move_order

LEAD = UUID("00000000-0000-4000-8000-000000000002")
T0 = datetime(2026, 9, 10, 8, 15, tzinfo=UTC)
# digital-sales: five line stages, then the exits stalled (5), lost (6), recycled (7).
POSITIONS = {
    "awareness": 0,
    "interest": 1,
    "desire": 2,
    "action": 3,
    "loyalty": 4,
    "stalled": 5,
    "lost": 6,
    "recycled": 7,
}


def move(frm: str | None, to: str, at: datetime, reason: str = "t") -> StageChanged:
    """A stage event shaped as stage-tracker's machine emits it."""
    return StageChanged(
        lead_id=LEAD,
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=frm,
        to_stage=to,
        to_stage_position=POSITIONS[to],
        reason=reason,
        changed_at=at,
    )


def come_back_from_lost(reentry: str) -> list[StageChanged]:
    """Captured, interested, lost; then a click brings it back: `recycled` and the re-entry
    stage in two moves dated at the same instant (machine._moves, the LOST branch)."""
    back = T0 + timedelta(days=40)
    return [
        move(None, "awareness", T0, "captured"),
        move("awareness", "interest", T0 + timedelta(hours=1)),
        move("interest", "lost", T0 + timedelta(days=30), "no activity"),
        move("lost", "recycled", back, "returned"),
        move("recycled", reentry, back),
    ]


def fold(events: list[StageChanged]) -> LeadState:
    state = LeadState()
    for event in events:
        state = apply(state, event)
    return state


def test_a_lead_back_from_lost_is_in_its_reentry_stage_in_any_event_order() -> None:
    for reentry in ("awareness", "interest", "action"):
        events = come_back_from_lost(reentry)
        for order in itertools.permutations(events):
            state = fold(list(order))
            assert [e.stage for e in state.entries] == [
                "awareness",
                "interest",
                "lost",
                "recycled",
                reentry,
            ], (reentry, [e.to_stage for e in order])
            counts = {
                key[1][1]: value
                for key, value in contributions(state).items()
                if key[0] == "stage_counts"
            }
            assert counts == {reentry: (1,)}


def test_the_recycled_stay_is_a_zero_length_stay_before_the_reentry() -> None:
    state = fold(come_back_from_lost("interest"))
    stays = sorted(
        (key[1][1], key[1][3]) for key in contributions(state) if key[0] == "stage_stays"
    )
    # awareness -> interest -> lost -> recycled -> interest: four completed stays, recycled's
    # the one that lasted no time; no stay of the last (current) stage.
    assert [stage for stage, _ in stays] == ["awareness", "interest", "lost", "recycled"]


def test_ties_without_a_chain_keep_the_position_order() -> None:
    """Entries that do not say where they came from (stored before the chain was kept, or
    two funnels) fall back to (position, stage), as before."""
    entries = [
        StageEntry(funnel_id="f", stage="recycled", position=7, at=T0),
        StageEntry(funnel_id="f", stage="awareness", position=0, at=T0),
        StageEntry(funnel_id="f", stage="lost", position=6, at=T0 - timedelta(days=1)),
    ]
    assert [e.stage for e in in_move_order(entries)] == ["lost", "awareness", "recycled"]


def test_a_chain_through_several_moves_at_one_instant_is_followed() -> None:
    """interest -> lost -> recycled -> awareness -> interest, the last four at one instant
    (a lost rule, then a return): each entry follows the one it came from."""
    at = T0 + timedelta(days=1)
    entries = [
        StageEntry(funnel_id="f", stage="interest", position=1, at=T0, from_stage="awareness"),
        StageEntry(funnel_id="f", stage="interest", position=1, at=at, from_stage="recycled"),
        StageEntry(funnel_id="f", stage="recycled", position=7, at=at, from_stage="lost"),
        StageEntry(funnel_id="f", stage="lost", position=6, at=at, from_stage="interest"),
    ]
    assert [e.stage for e in in_move_order(entries)] == [
        "interest",
        "lost",
        "recycled",
        "interest",
    ]
