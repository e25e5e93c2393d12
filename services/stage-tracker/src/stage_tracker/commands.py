"""Moves by people and by the stall timer, as commands in the tracker's own input log (pure).

The API and the stall timer make such a move at once and, in the same transaction, write a
`funnel.stage.move-requested.v1` command (outbox -> `funnel.stage-commands`). The consumer
reads its own commands back: live, the command's id is already among the lead's seen signals
and it changes nothing; in a replay into an empty database it makes the same move again, from
the same state, at the same clock. So manual and timer moves survive a rebuild.
"""

from __future__ import annotations

from dataclasses import replace

from funnel_contracts import StageMoveRequested
from stage_tracker.funnels import FunnelDefinition
from stage_tracker.machine import LeadState, Outcome, Refused, manual_move, on_timer
from stage_tracker.signals import Signal

# The signal kind a command is recorded as (lead_signals): what makes it "seen".
MOVE_REQUESTED = "move_requested"


def command_signal(command_id: str, command: StageMoveRequested) -> Signal:
    return Signal(command_id, command.event_type, MOVE_REQUESTED, command.requested_at)


def apply_command(
    state: LeadState,
    funnel: FunnelDefinition,
    command: StageMoveRequested,
    command_id: str,
    target: FunnelDefinition | None = None,
) -> Outcome:
    """The outcome of a command; nothing when it was applied before. Refused as a manual move."""
    if command_id in state.seen:
        return Outcome(state)
    if command.kind == "manual":
        if command.to_stage is None or not command.reason or not command.actor:
            raise Refused(422, "a manual move needs to_stage, reason and actor")
        outcome = manual_move(
            state,
            funnel,
            command.to_stage,
            reason=command.reason,
            actor=command.actor,
            at=command.requested_at,
            target_funnel=target,
            cause_event_id=command_id,
            cause_event_type=command.event_type,
        )
    else:
        outcome = on_timer(
            state,
            funnel,
            command.requested_at,
            cause_event_id=command_id,
            cause_event_type=command.event_type,
        )
    return replace(outcome, state=replace(outcome.state, seen=outcome.state.seen | {command_id}))
