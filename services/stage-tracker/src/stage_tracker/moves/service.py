"""The use cases of moves: apply consumed events to leads, move a lead (by hand, by the stall
timer, or a command read back from the tracker's input log), read a lead's journey.

A move is one use case (`move`) whoever asks for it: the API (a person), the stall timers
and the consumer of the tracker's own commands. Each works on the leads of one unit of work
(`LeadBatch`): read in a few queries, changed by the pure machine, written at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg

from funnel_contracts import (
    Envelope,
    EventData,
    LeadErased,
    LeadMerged,
    LeadOwnerChanged,
    OwnerAssigned,
    StageMoveRequested,
)
from funnel_contracts.lead_reader import LEAD_DETAIL_EVENTS, lead_details
from funnel_servicekit.inbox import Delivery, consume_span, rows_held
from funnel_servicekit.telemetry import spans_recorded
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from stage_tracker.funnels.models.definition import PublishedVersions, UnknownFunnel
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.moves.models.commands import (
    MoveCommand,
    OwnerCommand,
    apply_command,
    command_signal,
    owner_signal,
)
from stage_tracker.moves.models.machine import (
    LeadState,
    Move,
    Outcome,
    apply,
    capture,
    merged,
)
from stage_tracker.moves.models.versions import IfMatch, VersionMismatch
from stage_tracker.moves.store import leads as store
from stage_tracker.moves.store.batch import LeadBatch
from stage_tracker.scoring.models.decay import current_score, epoch
from stage_tracker.scoring.models.score import temperature
from stage_tracker.scoring.models.signals import CAPTURED, signal_of


class UnknownLead(LookupError):
    """A move for a lead the tracker has no state of (never captured, or erased)."""


class UnknownVersion(UnknownFunnel):
    """A manual move to a version of the lead's funnel that is not published."""


# ---------------------------------------------------------------- moves


async def move(leads: LeadBatch, registry: FunnelRegistry, command: MoveCommand) -> Outcome | None:
    """Apply a move command to one of `leads` (in their unit of work); None for no such lead.

    A new command (no id) is kept when it moves the lead: recorded as a seen signal and written
    to the tracker's input log, so a rebuild makes the move again. A command read back from
    that log is applied once (live it already was: it changes nothing). A manual move the
    funnel does not allow raises Refused (MalformedMove for an unknown stage); one to a version
    that is not published, UnknownVersion.
    """
    lead_id = command.lead_id
    state = leads.state(lead_id)
    if state is None or (command.id is not None and command.id in state.seen):
        return None if state is None else Outcome(state)
    conn = leads.uow.conn
    funnel = await registry.get(conn, state.funnel_id, state.funnel_version)
    target = None
    if command.funnel_version is not None and command.funnel_version != state.funnel_version:
        try:
            target = await registry.get(
                conn, command.funnel_id or state.funnel_id, command.funnel_version
            )
        except UnknownFunnel as exc:
            raise UnknownVersion(str(exc)) from None
    event = command.event(state.funnel_id)
    command_id = command.id or str(uuid4())
    outcome = apply_command(state, funnel, event, command_id, target)
    fresh = command.id is None
    if not fresh or outcome.moves:
        leads.record_signal(lead_id, command_signal(command_id, event), 0.0, applied=True)
    leads.save(lead_id, outcome, target or funnel)
    if fresh and outcome.moves:
        leads.emit(event, event_id=command_id)
    return outcome


def _checked(leads: LeadBatch, lead_id: UUID, if_match: IfMatch | None) -> LeadState:
    """The lead's state, locked; UnknownLead, or VersionMismatch when If-Match says another."""
    state = leads.state(lead_id)
    if state is None:
        raise UnknownLead(lead_id)
    if if_match is not None and not if_match.matches(state.version):
        raise VersionMismatch(state.stage, state.version)
    return state


async def move_lead(
    tx: Transactions,
    registry: FunnelRegistry,
    command: MoveCommand,
    if_match: IfMatch | None = None,
) -> Move:
    """A person moves a lead (UnknownLead, VersionMismatch, UnknownVersion, Refused); returns
    the move."""

    async def work(uow: UnitOfWork) -> Move:
        leads = await LeadBatch.load(uow, [command.lead_id])
        _checked(leads, command.lead_id, if_match)
        outcome = await move(leads, registry, command)
        if outcome is None:
            raise UnknownLead(command.lead_id)
        await leads.flush()
        [made] = outcome.moves
        return made

    return await tx.run(work)


async def move_leads(
    uow: UnitOfWork,
    registry: FunnelRegistry,
    commands: Sequence[MoveCommand],
    *,
    lock: bool = True,
) -> list[Outcome | None]:
    """Several leads' moves in one unit of work (`lock=False`: their rows are held already)."""
    leads = await LeadBatch.load(uow, [c.lead_id for c in commands], lock=lock)
    outcomes = [await move(leads, registry, c) for c in commands]
    await leads.flush()
    return outcomes


# ---------------------------------------------------------------- owners


async def set_owner(leads: LeadBatch, registry: FunnelRegistry, command: OwnerCommand) -> bool:
    """Apply an owner command to one of `leads` (in their unit of work); True when it changed
    the owner. A new command (no id) that changes it is written to the tracker's input log with
    a `funnel.lead.owner-changed.v1`; one read back from the log is applied once (a rebuild)."""
    lead_id = command.lead_id
    state = leads.state(lead_id)
    if state is None or (command.id is not None and command.id in state.seen):
        return False
    fresh = command.id is None
    if fresh and state.owner == command.owner:
        return False  # nothing changes: no version, no event
    command_id = command.id or str(uuid4())
    event = command.event(state.funnel_id)
    after = replace(state, owner=command.owner, seen=state.seen | {command_id})
    funnel = await registry.get(leads.uow.conn, state.funnel_id, state.funnel_version)
    leads.record_signal(lead_id, owner_signal(command_id, event), 0.0, applied=True)
    leads.save(lead_id, Outcome(after), funnel)
    if fresh:
        leads.emit(event, event_id=command_id)
    leads.emit(
        LeadOwnerChanged(
            lead_id=lead_id,
            funnel_id=state.funnel_id,
            owner=command.owner,
            previous_owner=state.owner,
            actor=command.actor,
            changed_at=command.at,
        )
    )
    return True


@dataclass(frozen=True)
class Ownership:
    lead_id: UUID
    owner: str | None
    version: int
    changed: bool


async def assign_owner(
    tx: Transactions,
    registry: FunnelRegistry,
    command: OwnerCommand,
    if_match: IfMatch | None = None,
) -> Ownership:
    """A person sets or releases a lead's owner (UnknownLead, VersionMismatch)."""

    async def work(uow: UnitOfWork) -> Ownership:
        leads = await LeadBatch.load(uow, [command.lead_id])
        state = _checked(leads, command.lead_id, if_match)
        changed = await set_owner(leads, registry, command)
        await leads.flush()
        version = await store.version_of(uow.conn, command.lead_id)
        return Ownership(command.lead_id, command.owner, version or state.version, changed)

    return await tx.run(work)


# ---------------------------------------------------------------- consumed events


async def consume(
    uow: UnitOfWork, registry: FunnelRegistry, deliveries: Sequence[Delivery]
) -> None:
    """A partition's fresh events, in order, in the inbox's unit of work.

    The batch's leads are read and written set-based; each event goes through the machine
    alone, against the state the previous one left.
    """
    ids = {d.event.lead_id for d in deliveries}
    ids |= {d.event.merged_lead_id for d in deliveries if isinstance(d.event, LeadMerged)}
    leads = await LeadBatch.load(uow, ids)
    # Every lead the batch writes is locked now: a pipelined consumer may begin the next poll,
    # whose transaction waits for these leads' locks (its shared leads) until this one commits.
    rows_held()
    # Read at the batch's first capture or lead update: kept by the registry while the stamp
    # of the published versions read with the leads is the same (no query then).
    versions: list[PublishedVersions] = []
    if spans_recorded():
        for d in deliveries:
            with consume_span(d.topic, d.envelope):
                await _apply(leads, registry, versions, d.envelope, d.event)
    else:
        # No span would be recorded (no exporter): none is made. Each event's outgoing events
        # still carry its trace, in the headers those unrecorded spans would have given them.
        for d in deliveries:
            leads.tracing(d.envelope.trace)
            await _apply(leads, registry, versions, d.envelope, d.event)
        leads.tracing(None)
    await leads.flush()


async def consume_one(
    uow: UnitOfWork, registry: FunnelRegistry, envelope: Envelope, event: EventData
) -> None:
    """One event, in the inbox's unit of work (the kit's path for a batch that failed)."""
    ids = [event.lead_id]
    if isinstance(event, LeadMerged):
        ids.append(event.merged_lead_id)
    leads = await LeadBatch.load(uow, ids)
    await _apply(leads, registry, [], envelope, event)
    await leads.flush()


async def _apply(
    leads: LeadBatch,
    registry: FunnelRegistry,
    versions: list[PublishedVersions],
    envelope: Envelope,
    event: EventData,
) -> None:
    lead_id = event.lead_id
    # The class compared, not isinstance'd (contract models are never subclassed; an
    # isinstance through pydantic's metaclass costs several times more, for every event).
    kind = type(event)
    if kind is LeadErased:
        leads.erase(lead_id, cast(LeadErased, event).erased_at)
        return
    if lead_id in leads.erased:
        return  # a straggler for a forgotten person: keep nothing
    if kind in _COMMANDS:
        await _command(leads, registry, envelope, event)
        return
    conn = leads.uow.conn
    details = lead_details(event) if kind in _LEAD_DETAIL_EVENTS else None
    if details is not None and not details.new and details.funnel_id is not None:
        # An unknown funnel is refused (its newest version, from the published ones).
        if not versions:
            versions.append(await registry.published(conn, leads.published))
        await registry.get(conn, details.funnel_id, versions[0].latest(details.funnel_id))
    if details is not None and details.test:
        leads.mark_test(lead_id)  # still moved (its journey can be looked at), never listed
    signal = signal_of(event, envelope.id, details)
    if signal is None:
        return
    state = leads.state(lead_id)
    if state is None:
        if signal.kind != CAPTURED or signal.funnel_id is None:
            # Arrived before its capture (another topic): kept, folded in at the capture.
            leads.record_signal(lead_id, signal, 0.0, applied=False)
            return
        if not versions:
            versions.append(await registry.published(conn, leads.published))
        version = versions[0].entered_at(signal.funnel_id, envelope.time)
        funnel = await registry.get(conn, signal.funnel_id, version)
        pending = leads.pending(lead_id)
        outcome = capture(funnel, signal, pending)
        folded = [signal, *pending]
    else:
        funnel = await registry.get(conn, state.funnel_id, state.funnel_version)
        outcome = apply(state, funnel, signal)
        folded = [signal]
    for s in folded:
        points = funnel.scoring.engagement.get(s.kind, 0.0)
        leads.record_signal(lead_id, s, points, applied=True)
    leads.save(lead_id, outcome, funnel)


_COMMANDS = frozenset({LeadMerged, StageMoveRequested, OwnerAssigned})
_LEAD_DETAIL_EVENTS = frozenset(LEAD_DETAIL_EVENTS)


async def _command(
    leads: LeadBatch, registry: FunnelRegistry, envelope: Envelope, event: EventData
) -> None:
    """A merge, or one of the tracker's own commands read back."""
    if isinstance(event, LeadMerged):
        await _merge(leads, registry, event, envelope.id)
    elif isinstance(event, StageMoveRequested):
        # A manual or timer move read back: live it was made already; a rebuild makes it.
        await move(leads, registry, MoveCommand.read_back(event, envelope.id))
    elif isinstance(event, OwnerAssigned):
        # An owner change read back: live it was made already; a rebuild makes it.
        await set_owner(leads, registry, OwnerCommand.read_back(event, envelope.id))


async def _merge(
    leads: LeadBatch, registry: FunnelRegistry, event: LeadMerged, event_id: str
) -> None:
    """Two leads of one person: the survivor folds the other in (the further stage wins,
    reason `merged`); the other keeps its history and stalls no more."""
    survivor, other = leads.state(event.lead_id), leads.state(event.merged_lead_id)
    if survivor is None or other is None or event.merged_lead_id in leads.erased:
        return  # one was never captured here, or is forgotten: nothing to fold
    conn = leads.uow.conn
    funnel = await registry.get(conn, survivor.funnel_id, survivor.funnel_version)
    outcome = merged(
        survivor, other, funnel, event.merged_at,
        cause_event_id=event_id, cause_event_type=event.event_type,
    )  # fmt: skip
    leads.save(event.lead_id, outcome, funnel)
    leads.merged(event.lead_id, event.merged_lead_id, event.merged_at)
    other_funnel = await registry.get(conn, other.funnel_id, other.funnel_version)
    leads.park(event.merged_lead_id, other_funnel)


# ---------------------------------------------------------------- reads


async def journey(
    conn: asyncpg.Connection, registry: FunnelRegistry, lead_id: UUID, now: datetime
) -> dict[str, Any] | None:
    """A lead's current stage, its owner and version, its score and temperature now (cooled
    by the wall clock `now`), and every transition with its cause."""
    row = await store.journey(conn, lead_id)
    if row is None:
        return None
    funnel = await registry.get(conn, row["funnel_id"], row["funnel_version"])
    h = row["half_life_seconds"]
    score = current_score(row["fit_score"], row["decay_sign"], row["decay_key"], h, epoch(now))
    return {
        "lead_id": str(lead_id),
        "funnel_id": row["funnel_id"],
        "funnel_version": row["funnel_version"],
        "current_stage": row["stage"],
        "entered_at": row["entered_at"],
        "owner": row["owner"],
        "version": row["version"],
        "score": round(score, 2),
        "fit_score": row["fit_score"],
        "engagement_score": round(score - row["fit_score"], 2),
        "temperature": temperature(funnel.scoring, score),
        "score_at": now,
        "scored_as_of": row["as_of"],
        "timer_due_at": row["timer_due_at"],
        "test": row["test"],  # a test lead: moved, but left out of the work queue
        "transitions": row["transitions"],
    }
