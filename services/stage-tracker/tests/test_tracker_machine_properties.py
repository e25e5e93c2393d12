"""Property tests of the state machine over random event sequences (hypothesis)."""

from __future__ import annotations

import itertools
from dataclasses import FrozenInstanceError, fields, replace
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracker_signals import at

from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.funnels.models.definition import FunnelDefinition
from stage_tracker.moves.models.machine import (
    LeadState,
    Move,
    apply,
    capture,
    evolve,
    on_timer,
)
from stage_tracker.scoring.models.signals import CAPTURED, Signal

FUNNELS = default_funnels()
KINDS = (
    "page_view",
    "pricing_viewed",
    "cart_created",
    "purchase_completed",
    "renewal_due",
    "subscription_renewed",
    "subscription_cancelled",
    "call_logged",
    "demo_requested",
    "touch_opened",
    "touch_clicked",
    "unsubscribed",
    "consent_granted",
    "updated",
)


@st.composite
def signals(draw: st.DrawFn) -> list[Signal | datetime]:
    """A capture, then events at random (often out-of-order) times; datetimes are timer ticks."""
    n = draw(st.integers(0, 25))
    out: list[Signal | datetime] = []
    for i in range(n):
        if draw(st.integers(0, 9)) == 0:
            out.append(at(draw(st.floats(0, 400))))
            continue
        kind = draw(st.sampled_from(KINDS))
        props = {"outcome": draw(st.sampled_from(["objection", "verbal-yes", "lost", "x"]))}
        answers = {}
        if draw(st.booleans()):
            answers = {
                q: draw(st.sampled_from(["yes", "no", "none", "now"]))
                for q in draw(st.sets(st.sampled_from(["budget", "authority", "need", "timing"])))
            }
        day = draw(st.floats(-5, 200))
        out.append(Signal(f"e{i}", "t", kind, at(day), props, answers))
    return out


def fold(
    funnel: FunnelDefinition, items: list[Signal | datetime]
) -> tuple[LeadState, list[Move], list[tuple[Signal, LeadState, tuple[Move, ...]]]]:
    first = Signal("cap", "funnel.lead.captured.v1", CAPTURED, at(0), {}, {}, funnel.id)
    outcome = capture(funnel, first)
    state, moves, steps = outcome.state, list(outcome.moves), []
    for item in items:
        if isinstance(item, datetime):
            outcome = on_timer(state, funnel, item)
        else:
            outcome = apply(state, funnel, item)
            steps.append((item, state, outcome.moves))
        state = outcome.state
        moves += outcome.moves
    return state, moves, steps


funnel_ids = st.sampled_from(sorted(FUNNELS))


@settings(max_examples=300, deadline=None)
@given(funnel_ids, signals())
def test_one_current_stage_and_a_history_without_gaps(funnel_id: str, items: list) -> None:
    funnel = FUNNELS[funnel_id]
    state, moves, _ = fold(funnel, items)
    assert funnel.has_stage(state.stage)
    assert moves[0].from_stage is None
    assert moves[-1].to_stage == state.stage
    for before, after in itertools.pairwise(moves):
        assert after.from_stage == before.to_stage
        assert after.to_stage != after.from_stage
        assert after.occurred_at >= before.occurred_at or after.cause_event_id is not None
    assert all(m.to_position == funnel.position(m.to_stage) for m in moves)


@settings(max_examples=300, deadline=None)
@given(funnel_ids, signals(), st.data())
def test_duplicated_and_reordered_redelivery_changes_nothing(
    funnel_id: str, items: list, data: st.DataObject
) -> None:
    funnel = FUNNELS[funnel_id]
    state, moves, _ = fold(funnel, items)
    # At-least-once delivery: already delivered events come again, later, in any order.
    delivered = [s for s in items if isinstance(s, Signal)]
    again = data.draw(st.lists(st.sampled_from(delivered), max_size=15)) if delivered else []
    redelivered = [*items]
    for dup in again:
        after = redelivered.index(dup) + 1
        redelivered.insert(data.draw(st.integers(after, len(redelivered))), dup)
    state2, moves2, _ = fold(funnel, redelivered)
    assert state2 == state
    assert moves2 == moves


@settings(max_examples=300, deadline=None)
@given(funnel_ids, signals(), st.randoms())
def test_the_score_does_not_depend_on_delivery_order(funnel_id: str, items: list, rnd) -> None:
    funnel = FUNNELS[funnel_id]
    events = [s for s in items if isinstance(s, Signal)]
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert fold(funnel, events)[0].score == fold(funnel, shuffled)[0].score


@settings(max_examples=300, deadline=None)
@given(funnel_ids, signals())
def test_a_late_event_never_moves_a_lead_back_or_out(funnel_id: str, items: list) -> None:
    funnel = FUNNELS[funnel_id]
    _, _, steps = fold(funnel, items)
    for signal, before, moves in steps:
        if signal.occurred_at < before.stage_entered_at:
            for m in moves:
                assert funnel.in_line(m.to_stage)
                assert funnel.position(m.to_stage) > funnel.position(before.stage)


def _states(funnel: FunnelDefinition, items: list[Signal | datetime]) -> list[LeadState]:
    """Every state a lead passes through (the first is the capture's)."""
    final, _, steps = fold(funnel, items)
    return [state for _, state, _ in steps] + [final]


@settings(max_examples=100, deadline=None)
@given(events=signals(), data=st.data())
def test_evolve_is_dataclasses_replace(
    events: list[Signal | datetime], data: st.DataObject
) -> None:
    """The machine's cheap copy of a state is the state `dataclasses.replace` makes, for any
    subset of the fields changed to any other state's values; the original stays as it was."""
    states = _states(FUNNELS["digital-sales"], events)
    base, other = data.draw(st.sampled_from(states)), data.draw(st.sampled_from(states))
    names = data.draw(st.sets(st.sampled_from([f.name for f in fields(LeadState)])))
    changes = {name: getattr(other, name) for name in names}
    before = replace(base)
    made = evolve(base, **changes)
    assert made == replace(base, **changes)
    assert type(made) is LeadState
    assert base == before
    with pytest.raises(FrozenInstanceError):
        made.stage = "x"  # type: ignore[misc]


def test_evolve_refuses_a_field_the_state_does_not_have() -> None:
    [state] = _states(FUNNELS["digital-sales"], [])
    with pytest.raises(TypeError, match="stag"):
        evolve(state, stag="interest")
