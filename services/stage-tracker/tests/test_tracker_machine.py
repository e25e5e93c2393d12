"""The stage machine (pure): entry rules, skipping, cycles, exits, late events, manual moves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tracker_signals import at, captured, sig

from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.funnels.models.definition import FunnelDefinition
from stage_tracker.moves.models.machine import (
    LeadState,
    MalformedMove,
    NotCaptured,
    Outcome,
    Refused,
    apply,
    capture,
    manual_move,
    on_timer,
    timer_due,
)
from stage_tracker.scoring.models.signals import Signal

DS = default_funnels()["digital-sales"]
SUB = default_funnels()["subscription"]
B2B = default_funnels()["b2b-sales-cycle"]


def run(funnel: FunnelDefinition, *signals: Signal, first: Signal | None = None) -> Outcome:
    outcome = capture(funnel, first or captured(funnel_id=funnel.id))
    moves = list(outcome.moves)
    for s in signals:
        outcome = apply(outcome.state, funnel, s)
        moves += outcome.moves
    return Outcome(outcome.state, tuple(moves), outcome.scored)


def path(outcome: Outcome) -> list[str]:
    return [m.to_stage for m in outcome.moves]


@pytest.mark.parametrize(
    ("funnel", "first"),
    [(DS, "awareness"), (SUB, "awareness"), (B2B, "prospecting")],
)
def test_a_captured_lead_enters_the_first_stage(funnel: FunnelDefinition, first: str) -> None:
    outcome = capture(funnel, captured(funnel_id=funnel.id))
    [entry] = outcome.moves
    assert (entry.from_stage, entry.to_stage, entry.to_position) == (None, first, 0)
    assert entry.reason == "captured"
    assert entry.cause_event_type == "funnel.lead.captured.v1"


def test_only_a_capture_creates_a_lead() -> None:
    with pytest.raises(NotCaptured):
        capture(DS, sig("page_view"))


def test_events_and_properties_move_a_lead_along() -> None:
    outcome = run(DS, sig("page_view", 1), sig("pricing_viewed", 2))
    assert path(outcome) == ["awareness", "interest", "desire"]
    assert outcome.moves[2].reason == "pricing_viewed"
    b2b = run(B2B, sig("call_logged", 1, outcome="objection"))
    assert path(b2b) == ["prospecting", "objection-handling"]
    assert b2b.moves[1].reason == "call_logged (outcome=objection)"
    other = run(B2B, sig("call_logged", 1, outcome="left-voicemail"))
    assert path(other) == ["prospecting", "initial-contact"]


def test_a_purchase_moves_anyone_to_action_skipping_stages() -> None:
    outcome = run(DS, sig("purchase_completed", 1))
    assert path(outcome) == ["awareness", "action"]
    again = apply(outcome.state, DS, sig("purchase_completed", 2))
    assert [m.to_stage for m in again.moves] == ["loyalty"]
    assert apply(again.state, DS, sig("purchase_completed", 3)).moves == ()  # never back


def test_qualification_answers_and_score_thresholds_are_entry_rules() -> None:
    bant = captured(
        funnel_id=B2B.id, budget="yes", authority="yes", need="yes", timing="this-quarter"
    )
    outcome = capture(B2B, bant)
    assert path(outcome) == ["prospecting", "qualification"]
    assert outcome.moves[1].reason == "answered budget, authority, need, timing"
    assert outcome.state.score.fit == 60
    # digital-sales: interest -> desire once the score reaches 40
    hot = run(DS, sig("page_view", 0.1), *(sig("touch_clicked", 0.2 + i / 100) for i in range(8)))
    assert path(hot) == ["awareness", "interest", "desire"]
    assert hot.moves[-1].reason == "score >= 40"


def test_disqualifying_answers_and_unsubscribes_lose_the_lead() -> None:
    outcome = capture(B2B, captured(funnel_id=B2B.id, budget="none"))
    assert path(outcome) == ["prospecting", "lost"]
    assert outcome.moves[1].reason == "disqualified"
    gone = run(DS, sig("page_view", 1), sig("unsubscribed", 2))
    assert path(gone)[-1] == "lost"
    assert gone.moves[-1].reason == "unsubscribed"


def test_a_lost_lead_that_comes_back_is_recycled_then_re_enters() -> None:
    lost = run(DS, sig("page_view", 1), sig("unsubscribed", 2))
    back = apply(lost.state, DS, sig("pricing_viewed", 40))
    assert [(m.from_stage, m.to_stage) for m in back.moves] == [
        ("lost", "recycled"),
        ("recycled", "desire"),
    ]
    quiet = apply(lost.state, DS, sig("page_view", 41))
    assert [m.to_stage for m in quiet.moves] == ["recycled", "interest"]
    opened = apply(lost.state, DS, sig("touch_opened", 41))
    assert opened.moves == ()  # an opened email is not a return


def test_the_subscription_cycle_repeats_every_billing_period() -> None:
    outcome = run(
        SUB,
        sig("purchase_completed", 1),
        sig("renewal_due", 30),
        sig("subscription_renewed", 31),
        sig("renewal_due", 60),
        sig("subscription_renewed", 61),
    )
    assert path(outcome) == [
        "awareness",
        "purchase",
        "re-evaluation",
        "repurchase",
        "re-evaluation",
        "repurchase",
    ]
    cancelled = apply(outcome.state, SUB, sig("subscription_cancelled", 90))
    assert [(m.to_stage, m.reason) for m in cancelled.moves] == [("lost", "cancelled")]


def test_a_late_event_counts_for_the_score_but_never_moves_back_or_out() -> None:
    due = run(SUB, sig("purchase_completed", 1), sig("renewal_due", 30))
    # Judged against the stage the lead is in now, a late guarded rule moves it forward,
    # dated when that stage was entered.
    late_renewal = apply(due.state, SUB, sig("subscription_renewed", 29))
    assert [(m.to_stage, m.occurred_at) for m in late_renewal.moves] == [("repurchase", at(30))]
    on_time = apply(due.state, SUB, sig("subscription_renewed", 31))
    assert [m.to_stage for m in on_time.moves] == ["repurchase"]
    # ... but never back: a late `renewal_due` finds the customer past its period.
    renewed = run(
        SUB, sig("purchase_completed", 1), sig("renewal_due", 30), sig("subscription_renewed", 32)
    )
    assert renewed.state.stage == "repurchase"
    assert apply(renewed.state, SUB, sig("renewal_due", 31)).moves == ()
    action = run(DS, sig("purchase_completed", 5))
    late = apply(action.state, DS, sig("pricing_viewed", 2))
    assert late.moves == ()
    assert late.state.score.engagement > action.state.score.engagement
    assert late.scored is not None
    late_unsubscribe = apply(action.state, DS, sig("unsubscribed", 1))
    assert late_unsubscribe.moves == ()
    # forward is still forward: a late purchase moves a lead that is behind
    forward = apply(run(DS, sig("page_view", 5)).state, DS, sig("purchase_completed", 3))
    assert [m.to_stage for m in forward.moves] == ["action"]


def test_a_duplicate_changes_nothing() -> None:
    first = sig("page_view", 1, event_id="same")
    outcome = run(DS, first)
    again = apply(outcome.state, DS, first)
    assert again == Outcome(outcome.state)


def test_signals_before_the_capture_are_folded_in_event_time_order() -> None:
    early = [sig("pricing_viewed", 0.5), sig("page_view", 0.2)]
    outcome = capture(DS, captured(0.1), early)
    assert path(outcome) == ["awareness", "interest", "desire"]


def test_scoring_decays_by_half_life_and_sets_the_temperature() -> None:
    outcome = run(DS, sig("demo_requested", 0), sig("purchase_completed", 0))
    assert outcome.state.score.engagement == 50
    assert outcome.state.score.temperature == "hot"
    later = apply(outcome.state, DS, sig("touch_opened", 14))  # one half-life later
    assert later.state.score.engagement == pytest.approx(26.0)
    assert later.state.score.temperature == "warm"
    assert later.scored is not None
    assert (later.scored.previous_temperature, later.scored.became_hot) == ("hot", False)


def test_entering_hot_is_flagged() -> None:
    warm = run(DS, sig("demo_requested", 0))
    hot = apply(warm.state, DS, sig("purchase_completed", 0))
    assert hot.scored is not None
    assert hot.scored.became_hot


def test_no_activity_stalls_then_loses_a_lead_dated_at_the_limit() -> None:
    state = run(DS, sig("page_view", 1)).state
    assert timer_due(state, DS) == at(31)
    assert on_timer(state, DS, at(30)).moves == ()
    stalled = on_timer(state, DS, at(40))
    [move] = stalled.moves
    assert (move.from_stage, move.to_stage, move.occurred_at) == ("interest", "stalled", at(31))
    assert move.reason == "no activity for 30 days"
    lost = on_timer(stalled.state, DS, at(70))
    assert [(m.to_stage, m.occurred_at) for m in lost.moves] == [("lost", at(61))]
    resumed = apply(stalled.state, DS, sig("page_view", 45))
    assert [(m.from_stage, m.to_stage, m.reason) for m in resumed.moves] == [
        ("stalled", "interest", "resumed")
    ]


def test_manual_moves_with_reason_and_actor_or_refused_with_the_reason() -> None:
    state = run(DS, sig("page_view", 1), sig("pricing_viewed", 2)).state
    moved = manual_move(state, DS, "action", reason="paid by invoice", actor="ana", at=at(3))
    [move] = moved.moves
    assert (move.from_stage, move.to_stage, move.actor, move.reason) == (
        "desire",
        "action",
        "ana",
        "paid by invoice",
    )
    with pytest.raises(Refused) as back:
        manual_move(moved.state, DS, "interest", reason="oops", actor="ana", at=at(4))
    assert not isinstance(back.value, MalformedMove)  # the API answers 409
    assert "does not allow moving back" in back.value.reason
    with pytest.raises(Refused) as same:
        manual_move(moved.state, DS, "action", reason="x", actor="ana", at=at(4))
    assert "already in action" in same.value.reason
    with pytest.raises(Refused) as unknown:
        manual_move(moved.state, DS, "nirvana", reason="x", actor="ana", at=at(4))
    assert isinstance(unknown.value, MalformedMove)  # the API answers 422
    for exit_ in ("recycled", "stalled"):
        with pytest.raises(Refused):
            manual_move(moved.state, DS, exit_, reason="x", actor="ana", at=at(4))
    b2b = capture(B2B, captured(funnel_id=B2B.id)).state
    closing = manual_move(b2b, B2B, "closing", reason="r", actor="bo", at=at(1)).state
    assert manual_move(closing, B2B, "qualification", reason="r", actor="bo", at=at(2)).moves


def test_a_lead_keeps_its_version_until_moved_to_a_newer_one() -> None:
    v2 = FunnelDefinition(
        DS.id, 2, DS.name, DS.stages, DS.lost_when, None, DS.scoring, manual_backward=True
    )
    state: LeadState = capture(DS, captured()).state
    assert state.funnel_version == 1
    moved = manual_move(
        state, DS, "awareness", reason="v2", actor="ana", at=at(1), target_funnel=v2
    )
    assert moved.state.funnel_version == 2
    assert moved.moves[0].funnel_version == 2
    with pytest.raises(Refused):
        manual_move(moved.state, v2, "interest", reason="r", actor="a", at=at(2), target_funnel=DS)


def test_timer_limits_come_from_the_stage() -> None:
    state = capture(DS, captured()).state
    assert timer_due(state, DS) == state.stage_entered_at + timedelta(days=30)
    action = run(DS, sig("purchase_completed", 1)).state
    assert timer_due(action, DS) is None
