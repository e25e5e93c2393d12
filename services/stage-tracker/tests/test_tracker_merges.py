"""A merge in the stage machine (pure): the survivor takes the further stage of the two (a
move with reason `merged`), the other's answers and score contributions; nothing twice."""

from __future__ import annotations

from tracker_signals import at, captured, sig

from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.moves.models.machine import apply, capture, merged

DS = default_funnels()["digital-sales"]


def test_the_further_stage_wins_with_reason_merged() -> None:
    survivor = capture(DS, captured(0)).state
    other = capture(DS, captured(1, budget="yes")).state
    other = apply(other, DS, sig("pricing_viewed", 2)).state  # desire
    assert (survivor.stage, other.stage) == ("awareness", "desire")

    outcome = merged(survivor, other, DS, at(3), cause_event_id="m1", cause_event_type="merge")

    assert [(m.from_stage, m.to_stage, m.reason, m.occurred_at) for m in outcome.moves] == [
        ("awareness", "desire", "merged", at(3)),
    ]
    assert outcome.state.answer_values() == {"budget": "yes"}
    assert outcome.state.last_activity_at == other.last_activity_at
    assert "m1" in outcome.state.seen
    again = merged(outcome.state, other, DS, at(3), cause_event_id="m1", cause_event_type="merge")
    assert again.moves == ()  # a redelivered merge changes nothing


def test_a_survivor_further_along_stays_where_it_is() -> None:
    survivor = apply(capture(DS, captured(0)).state, DS, sig("pricing_viewed", 1)).state
    other = capture(DS, captured(2)).state
    outcome = merged(survivor, other, DS, at(3), cause_event_id="m2", cause_event_type="merge")
    assert outcome.moves == ()
    assert outcome.state.stage == "desire"
