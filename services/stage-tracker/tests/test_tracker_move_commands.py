"""Moves by people and by the stall timer as commands (pure): what is written to the
tracker's input log is what a rebuild reads back and applies the same way."""

from __future__ import annotations

from uuid import uuid4

import pytest
from tracker_signals import at, captured, sig

from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.moves.models.commands import MoveCommand, apply_command
from stage_tracker.moves.models.machine import MalformedMove, Refused, apply, capture

DS = default_funnels()["digital-sales"]


def test_a_manual_command_read_back_is_the_command_that_was_written() -> None:
    lead = uuid4()
    made = MoveCommand.manual(
        lead, "action", reason="paid by invoice", actor="ana", at=at(3), funnel_version=2
    )
    written = made.event("digital-sales")
    assert (written.funnel_id, written.kind, written.requested_at) == (
        "digital-sales",
        "manual",
        at(3),
    )
    back = MoveCommand.read_back(written, "cmd-1")
    assert back.id == "cmd-1"
    assert back.event("another-funnel") == written  # the log's funnel id wins when read back


def test_the_same_command_moves_the_lead_once_and_the_same_way_live_and_rebuilt() -> None:
    state = apply(capture(DS, captured()).state, DS, sig("pricing_viewed", 1)).state
    command = MoveCommand.manual(uuid4(), "action", reason="paid", actor="ana", at=at(2)).event(
        "digital-sales"
    )
    live = apply_command(state, DS, command, "cmd-1")
    rebuilt = apply_command(state, DS, command, "cmd-1")
    assert live == rebuilt
    [move] = live.moves
    assert (move.from_stage, move.to_stage, move.actor, move.cause_event_id) == (
        "desire",
        "action",
        "ana",
        "cmd-1",
    )
    assert "cmd-1" in live.state.seen
    assert apply_command(live.state, DS, command, "cmd-1").moves == ()  # read back live


def test_a_stall_timer_command_before_the_limit_moves_nothing() -> None:
    state = capture(DS, captured()).state
    early = MoveCommand.stall_timer(uuid4(), at(1)).event("digital-sales")
    assert apply_command(state, DS, early, "t-1").moves == ()
    late = MoveCommand.stall_timer(uuid4(), at(400)).event("digital-sales")
    [move] = apply_command(state, DS, late, "t-2").moves
    assert move.to_stage == "stalled"


def test_a_manual_command_without_a_reason_is_malformed_not_merely_refused() -> None:
    state = capture(DS, captured()).state
    incomplete = MoveCommand(uuid4(), "manual", at(1), to_stage="interest").event("digital-sales")
    with pytest.raises(MalformedMove):
        apply_command(state, DS, incomplete, "cmd-2")
    back = MoveCommand.manual(uuid4(), "stalled", reason="r", actor="a", at=at(1))
    with pytest.raises(Refused) as refused:
        apply_command(state, DS, back.event("digital-sales"), "cmd-3")
    assert not isinstance(refused.value, MalformedMove)
