"""A late event that moves a lead forward is dated no earlier than the stage it leaves.

After a broker or database outage the tracker meets one lead's events from different topics
out of their time order (a click before the purchase it followed). The move a late purchase
causes then happens after the lead entered its current stage; dating it at the purchase's own
time would give a history whose times run backwards, and readers that order the stage events
by time (reporting's current stage) would put the lead back in the stage it left.
"""

from __future__ import annotations

from tracker_signals import at, captured, sig

from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.moves.models.machine import apply, capture

DS = default_funnels()["digital-sales"]


def test_a_late_forward_move_is_dated_when_the_current_stage_was_entered() -> None:
    lead = capture(DS, captured())
    clicked = apply(lead.state, DS, sig("touch_clicked", 5))  # processed first
    assert [(m.to_stage, m.occurred_at) for m in clicked.moves] == [("interest", at(5))]
    purchase = apply(clicked.state, DS, sig("purchase_completed", 3))  # happened before it
    assert [(m.to_stage, m.occurred_at) for m in purchase.moves] == [("action", at(5))]
    assert purchase.state.stage_entered_at == at(5)


def test_an_event_on_time_is_dated_at_its_own_time() -> None:
    lead = capture(DS, captured())
    viewed = apply(lead.state, DS, sig("page_view", 2))
    bought = apply(viewed.state, DS, sig("purchase_completed", 3))
    assert [(m.to_stage, m.occurred_at) for m in bought.moves] == [("action", at(3))]
