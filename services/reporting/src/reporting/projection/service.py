"""The projection's one use case: a batch of events applied to the leads' states, and the
aggregates changed by the difference they make.

The live consumer and the rebuild both call `project`, with a partition batch or with the one
event of a record processed on its own; it runs inside the inbox transaction, so an event is
applied exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from uuid import UUID

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadErased,
    LeadMerged,
    LeadOwnerChanged,
    LeakDetected,
    LeakResolved,
    StageChanged,
    TaskUpdated,
    TouchClicked,
    TouchOpened,
    TouchSent,
)
from funnel_contracts.lead_reader import LEAD_DETAIL_EVENTS
from funnel_servicekit.unit_of_work import UnitOfWork
from reporting.leaks import store as leaks
from reporting.projection import store
from reporting.projection.models.contributions import Deltas
from reporting.projection.models.lead_state import LeadState, apply, fold
from reporting.timeline.models import Item, item_of, with_sends_told

# What wraps the work of the i-th event of a batch (the consumer's trace span of that event).
EventScope = Callable[[int], AbstractContextManager[object]]

# The events some aggregate or the timeline depends on; the rest of the topics is read and
# skipped.
PROJECTED: tuple[type[EventData], ...] = (
    *LEAD_DETAIL_EVENTS,
    LeadErased,
    LeadMerged,
    ActivityRecorded,
    StageChanged,
    TouchSent,
    TouchOpened,
    TouchClicked,
    TaskUpdated,  # the timeline only
    LeadOwnerChanged,  # the timeline only
    LeakDetected,  # the leaks table only (a rebuild gets the leaks back)
    LeakResolved,
)


def _unscoped(_: int) -> AbstractContextManager[object]:
    return nullcontext()


async def project(
    uow: UnitOfWork, events: Sequence[EventData], scope: EventScope = _unscoped
) -> None:
    """Project `events` (in delivery order) with the same result as one by one: the leads'
    states loaded and locked in one statement, each lead's events applied in order, the
    differences summed over the batch and written with one statement per table, and each
    event's timeline item beside them (none of a person erased). Leak events (about a
    funnel, not a person) go to the leaks table only."""
    conn = uow.conn
    found = [e for e in events if isinstance(e, LeakDetected | LeakResolved)]
    if found:
        await leaks.record_leak_events(conn, found)
    merges = [e for e in events if isinstance(e, LeadMerged)]
    ids = {e.lead_id for e in events if _about_a_person(e)}
    ids |= {m.merged_lead_id for m in merges}
    states = await store.lock_states(conn, sorted(ids))
    # A lead merged into another before: what it does counts for its survivor (a rebuild
    # replays the merge before some of the other's events), but for its own stage moves
    # (the tracker's `merged` move says where the person is).
    survivors = {lead: s.merged_into for lead, (s, _) in states.items() if s.merged_into}
    missing = set(survivors.values()) - set(states)
    if missing:
        states.update(await store.lock_states(conn, sorted(missing)))
    by_lead: dict[UUID, list[int]] = defaultdict(list)
    for i, event in enumerate(events):
        if not _about_a_person(event):
            continue  # a finding about a funnel, or the team's task about it
        lead = event.lead_id
        if lead in survivors and not isinstance(event, StageChanged | LeadMerged | LeadErased):
            lead = survivors[lead]
        by_lead[lead].append(i)
    positions = _stage_positions(events, states)
    total = Deltas()
    changed: dict[UUID, LeadState] = {}
    erased: dict[UUID, datetime] = {}
    gone: list[UUID] = []
    items: list[Item] = []
    for lead_id, indexes in by_lead.items():
        old, was_erased = states[lead_id]
        if was_erased:  # late events of an erased person: nothing of them is kept
            gone.append(lead_id)
            continue
        new = old
        own: list[Item] = []
        for i in indexes:
            event = events[i]
            with scope(i):
                # After the lead's first event here, `new` is this batch's own copy.
                new = apply(new, event, owned=new is not old)
                item = item_of(event)
            if item is not None:
                own.append(item)
            if isinstance(event, LeadErased):
                erased[lead_id] = event.erased_at
                break  # what follows it in the batch is a late event of an erased person
        if lead_id not in erased:
            items += own
        if new != old:
            total.add_change(old, new)
            if lead_id not in erased:
                changed[lead_id] = new
    for m in merges:
        # After the batch's own events: the person's two leads folded into the survivor.
        if states[m.lead_id][1] or states[m.merged_lead_id][1]:
            continue
        if m.lead_id in erased:
            # The person was forgotten in this very batch: the other lead goes with them, as
            # it does when the erasure comes in a later batch (folded, then forgotten).
            old_o = changed.get(m.merged_lead_id, states[m.merged_lead_id][0])
            if m.merged_lead_id not in erased and old_o.merged_into is None:
                new_o = old_o.model_copy(update={"merged_into": m.lead_id})
                total.add_change(old_o, new_o)
                changed[m.merged_lead_id] = new_o
            continue
        old_s = changed.get(m.lead_id, states[m.lead_id][0])
        old_o = changed.get(m.merged_lead_id, states[m.merged_lead_id][0])
        new_s, new_o = fold(old_s, old_o, m.lead_id)
        total.add_change(old_s, new_s)
        total.add_change(old_o, new_o)
        changed[m.lead_id], changed[m.merged_lead_id] = new_s, new_o
    await store.forget_states(conn, gone)
    await store.erase_many(conn, erased)
    # The deltas, the stage positions, the states and the timeline items: one statement.
    await store.write_batch(conn, total, positions, changed, with_sends_told(items))


async def fold_queued(uow: UnitOfWork, limit: int) -> int:
    """The oldest `limit` queue rows of each conversion table moved into the quarter-hour
    tables and their rollups; how many rows one table had."""
    return await store.fold_queued(uow.conn, limit)


def _about_a_person(event: EventData) -> bool:
    """False for a leak and for a team task about one (its lead_id is the leak's, as the
    record key): they make no lead state."""
    if isinstance(event, LeakDetected | LeakResolved):
        return False
    return not (isinstance(event, TaskUpdated) and event.leak_id is not None)


def _stage_positions(
    events: Sequence[EventData], states: dict[UUID, tuple[LeadState, bool]]
) -> dict[tuple[str, str], int]:
    """The stage positions the events tell, the latest winning; none from an erased person."""
    positions: dict[tuple[str, str], int] = {}
    stopped = {lead_id for lead_id, (_, was_erased) in states.items() if was_erased}
    for event in events:
        if event.lead_id in stopped:
            continue
        if isinstance(event, StageChanged):
            positions[(event.funnel_id, event.to_stage)] = event.to_stage_position
        elif isinstance(event, LeadErased):
            stopped.add(event.lead_id)
    return positions
