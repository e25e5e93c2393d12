"""Moves by people and by the stall timer, as commands in the tracker's own input log (pure).

The API and the stall timer make such a move at once and, in the same transaction, write a
`funnel.stage.move-requested.v1` command (outbox -> `funnel.stage-commands`). The consumer
reads its own commands back: live, the command's id is already among the lead's seen signals
and it changes nothing; in a rebuild of an empty database it makes the same move again, from
the same state, at the same clock. So manual and timer moves survive a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal
from uuid import UUID

from funnel_contracts import OwnerAssigned, StageMoveRequested
from stage_tracker.funnels.models.definition import FunnelDefinition
from stage_tracker.moves.models.machine import (
    LeadState,
    MalformedMove,
    Outcome,
    manual_move,
    on_timer,
)
from stage_tracker.scoring.models.signals import Signal

# The signal kind a command is recorded as (lead_signals): what makes it "seen".
MOVE_REQUESTED = "move_requested"


@dataclass(frozen=True)
class MoveCommand:
    """A move caused by no consumed event: by a person (`manual`) or by the stall timer.

    `id` None: a new command, made now and written to the tracker's input log when it moves
    the lead. Otherwise a command read back from that log (its event id): live it was made
    already and changes nothing; in a rebuild it makes the same move again.
    """

    lead_id: UUID
    kind: Literal["manual", "stall_timer"]
    at: datetime
    to_stage: str | None = None
    reason: str | None = None
    actor: str | None = None
    funnel_version: int | None = None  # a manual move to this (newer) version
    funnel_id: str | None = None  # None: the lead's own funnel
    id: str | None = None

    @classmethod
    def manual(
        cls,
        lead_id: UUID,
        to_stage: str,
        *,
        reason: str,
        actor: str,
        at: datetime,
        funnel_version: int | None = None,
    ) -> MoveCommand:
        return cls(lead_id, "manual", at, to_stage, reason, actor, funnel_version)

    @classmethod
    def stall_timer(cls, lead_id: UUID, at: datetime) -> MoveCommand:
        return cls(lead_id, "stall_timer", at)

    @classmethod
    def read_back(cls, command: StageMoveRequested, command_id: str) -> MoveCommand:
        return cls(
            command.lead_id,
            command.kind,
            command.requested_at,
            command.to_stage,
            command.reason,
            command.actor,
            command.funnel_version,
            command.funnel_id,
            command_id,
        )

    def event(self, funnel_id: str) -> StageMoveRequested:
        """The command as the tracker's input log holds it, for a lead in `funnel_id`."""
        return StageMoveRequested(
            lead_id=self.lead_id,
            funnel_id=self.funnel_id or funnel_id,
            kind=self.kind,
            to_stage=self.to_stage,
            reason=self.reason,
            actor=self.actor,
            funnel_version=self.funnel_version,
            requested_at=self.at,
        )


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
            raise MalformedMove("a manual move needs to_stage, reason and actor")
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


# The signal kind an owner command is recorded as (lead_signals): what makes it "seen".
OWNER_ASSIGNED = "owner_assigned"


@dataclass(frozen=True)
class OwnerCommand:
    """A person hands a lead to an owner (a key's name) or releases it (`owner` None).

    Like a move by hand, it is written to the tracker's input log (`funnel.lead.owner-assigned.v1`
    on `funnel.stage-commands`) in the transaction that applies it: `id` None for a new one;
    otherwise read back from the log (live it changes nothing, a rebuild applies it).
    """

    lead_id: UUID
    owner: str | None
    actor: str
    at: datetime
    id: str | None = None

    @classmethod
    def read_back(cls, command: OwnerAssigned, command_id: str) -> OwnerCommand:
        return cls(command.lead_id, command.owner, command.actor, command.requested_at, command_id)

    def event(self, funnel_id: str) -> OwnerAssigned:
        return OwnerAssigned(
            lead_id=self.lead_id,
            funnel_id=funnel_id,
            owner=self.owner,
            actor=self.actor,
            requested_at=self.at,
        )


def owner_signal(command_id: str, command: OwnerAssigned) -> Signal:
    return Signal(command_id, command.event_type, OWNER_ASSIGNED, command.requested_at)
