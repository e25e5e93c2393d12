"""Firing due stall timers: each is a move (stage_tracker.moves.service.move) by the timer."""

from __future__ import annotations

from datetime import datetime

from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.moves.models.commands import MoveCommand
from stage_tracker.moves.service import move_leads
from stage_tracker.timers import store


async def fire_due(tx: Transactions, registry: FunnelRegistry, now: datetime, limit: int) -> int:
    """Fire one batch of due timers in one unit of work; returns how many leads moved."""

    async def work(uow: UnitOfWork) -> int:
        due = await store.due_leads(uow.conn, now, limit)
        # Their rows and advisory locks are ours already (tried, SKIP LOCKED): nothing is
        # waited for, so no lock cycle with a consumer that holds a lead and wants another.
        commands = [MoveCommand.stall_timer(lead_id, now) for lead_id in due]
        outcomes = await move_leads(uow, registry, commands, lock=False)
        return sum(1 for outcome in outcomes if outcome is not None and outcome.moves)

    return await tx.run(work)
