"""Recording activities, and emitting those that waited for their person once it is known.

An anonymous visitor's page views wait for the visitor to fill a form; an activity naming an
email nobody has given yet waits for a lead with that email. Either way they are emitted
then, in the order they happened, with their own event times: nothing done before is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg

from funnel_contracts import Utm
from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES
from funnel_servicekit.outbox import outbox_record
from funnel_servicekit.problems import field_problem, invalid_fields, not_found
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from lead_intake.activities import store
from lead_intake.activities.models import (
    MAX_NOTES,
    ActivitiesAccepted,
    ActivityBatch,
    ActivityIn,
    ItemResult,
    Known,
    NotesOut,
    Owner,
    StoredActivity,
    activity_event,
    email_sha256,
    note_of,
    owner,
    unknown_people,
)


async def record_activities(
    transactions: Transactions,
    batch: ActivityBatch,
    *,
    form_id: str | None,
    actor: str | None = None,
) -> ActivitiesAccepted:
    """Store the batch; emit each activity whose lead is known, keep the others waiting.

    Run again whole when PostgreSQL undid it for a deadlock (a bulk import creating the same
    people took their locks in another order).
    """
    if _one_by_lead_id(batch):
        return await _record_one_by_lead_id(transactions, batch, form_id, actor)
    return await transactions.run(lambda uow: _record(uow, batch, form_id, actor))


def _one_by_lead_id(batch: ActivityBatch) -> bool:
    """A batch of one activity naming its lead by id with nothing to seal (a page view from a
    known person's browser, most of the traffic): one statement does all of it."""
    if len(batch.activities) != 1:
        return False
    activity = batch.activities[0]
    return activity.lead_id is not None and not (activity.properties or activity.page_url)


async def _record_one_by_lead_id(
    transactions: Transactions, batch: ActivityBatch, form_id: str | None, actor: str | None
) -> ActivitiesAccepted:
    """`_record` for `_one_by_lead_id`'s batch: the lead's look-up, the activity and its event
    in one statement, atomic by itself (no BEGIN, no COMMIT of their own); the same answers
    (accepted, duplicate, the 422 for a lead that is not known)."""
    [activity] = batch.activities
    assert activity.lead_id is not None
    stored = _stored(activity, activity.lead_id, None, datetime.now(UTC), actor)
    event = outbox_record(
        activity_event(stored, activity.lead_id, None), source=transactions.outbox.source
    )
    async with transactions.pool.acquire() as conn:
        emitted = await store.insert_for_known_lead(
            conn, stored, form_id, event, transactions.outbox.schema
        )
    if emitted is None:
        unknown = owner(0, activity, Known(frozenset(), {}, {}))
        assert isinstance(unknown, dict)
        raise invalid_fields([unknown], "Unknown people")
    status = "accepted" if emitted else "duplicate"
    return ActivitiesAccepted.of([ItemResult(id=stored.id, status=status)])


def _stored(
    activity: ActivityIn,
    lead_id: UUID | None,
    waits_for_email: str | None,
    now: datetime,
    actor: str | None,
) -> StoredActivity:
    return StoredActivity(
        id=activity.id or uuid4(),
        lead_id=lead_id,
        visitor_id=activity.visitor_id,
        activity_type=activity.type,
        occurred_at=activity.occurred_at,
        recorded_at=now,
        order_id=activity.order_id,
        details=activity.details(actor),
        pending_email_sha256=waits_for_email,
    )


async def _record(
    uow: UnitOfWork, batch: ActivityBatch, form_id: str | None, actor: str | None
) -> ActivitiesAccepted:
    now = datetime.now(UTC)
    items = batch.activities
    known, keys = await _known(uow, batch)
    owners = [owner(i, a, known) for i, a in enumerate(items)]
    errors = [o for o in owners if isinstance(o, dict)]
    if errors:
        raise invalid_fields(errors, "Unknown people")
    result: list[ItemResult] = []
    # The keys of the leads whose activities have something to seal (no round trip else;
    # those named by lead id came with the look-up).
    sealing = {
        o.lead_id
        for a, o in zip(items, owners, strict=True)
        if isinstance(o, Owner) and o.lead_id and (a.properties or a.page_url)
    }
    if missing := sealing - keys.keys():
        keys = keys | await store.data_keys(uow.conn, sorted(missing))
    for activity, whose in zip(items, owners, strict=True):
        assert isinstance(whose, Owner)
        stored = _stored(activity, whose.lead_id, whose.waits_for_email, now, actor)
        if whose.lead_id is None:
            kept = await store.insert_activity(uow.conn, stored, form_id)
            result.append(ItemResult(id=stored.id, status="pending" if kept else "duplicate"))
            continue
        # Its event made now, written by the same statement if the activity is new.
        event = outbox_record(
            activity_event(stored, whose.lead_id, keys.get(whose.lead_id)),
            source=uow.outbox.source,
        )
        emitted = await store.insert_activity_with_event(
            uow.conn, stored, form_id, event, uow.outbox.schema
        )
        result.append(ItemResult(id=stored.id, status="accepted" if emitted else "duplicate"))
    return ActivitiesAccepted.of(result)


async def _known(uow: UnitOfWork, batch: ActivityBatch) -> tuple[Known, dict[UUID, bytes]]:
    """Who the batch names, and the data keys of the leads it names by id (the same look-up;
    a lead captured before keys existed has none yet); people not known yet are locked and
    looked up once more.

    The lock makes a lead being created right now for one of them either visible here (so
    the activity is emitted) or wait until this batch commits (and then claim it).
    """
    conn = uow.conn
    items = batch.activities
    # Only the lookups the batch needs: a page view by lead id is one query, not three.
    lead_ids = sorted({a.lead_id for a in items if a.lead_id})
    emails = sorted({a.email for a in items if a.email})
    visitor_ids = sorted({a.visitor_id for a in items if a.visitor_id})
    found = await store.leads_and_keys(conn, lead_ids) if lead_ids else {}
    keys = {lead_id: key for lead_id, key in found.items() if key is not None}
    known = Known(
        frozenset(found),
        await store.leads_by_email(conn, emails) if emails else {},
        await store.leads_of_visitors(conn, visitor_ids) if visitor_ids else {},
    )
    unknown_emails, visitors = unknown_people(batch, known)
    if not unknown_emails and not visitors:
        return known, keys
    await store.lock_unknown_people(conn, [email_sha256(e) for e in unknown_emails], visitors)
    return Known(
        known.lead_ids,
        known.by_email
        | (await store.leads_by_email(conn, unknown_emails) if unknown_emails else {}),
        known.by_visitor | (await store.leads_of_visitors(conn, visitors) if visitors else {}),
    ), keys


async def first_tagged_visit(
    conn: asyncpg.Connection, visitor_id: str
) -> tuple[Utm, str | None, datetime] | None:
    """An anonymous visitor's first touch: the earliest of its activities with UTM tags (its
    tags, its page, when), or None."""
    found = await store.first_tagged_visit(conn, visitor_id)
    if found is None:
        return None
    tags, page, at = found
    return Utm.model_validate(tags), page, at


async def emails_waited_for(conn: asyncpg.Connection, emails: list[str]) -> set[str]:
    """Of these emails, the ones activities wait for; each email held until the caller's
    transaction ends (an activity naming one waits for the leads it is making)."""
    by_hash = {email_sha256(e): e for e in emails}
    found = await store.lock_and_find_pending_emails(conn, list(by_hash))
    return {by_hash[h] for h in found}


async def emit_waiting(
    uow: UnitOfWork,
    lead_id: UUID,
    *,
    visitor_id: str | None,
    email: str | None,
) -> int:
    """Inside the caller's unit of work: link the visitor, claim and emit; returns how many.

    `email` is given for a lead created just now (a known lead claimed its email's
    activities when it was created).
    """
    if visitor_id is not None:
        await store.link_visitor(uow.conn, visitor_id, lead_id)
    waiting = await store.claim_pending(uow.conn, lead_id, visitor_id=visitor_id, email=email)
    return await _emit_claimed(uow, lead_id, waiting, key=None)


async def emit_claimed(
    uow: UnitOfWork, lead_id: UUID, activity_ids: list[UUID], *, key: bytes | None
) -> int:
    """Inside the caller's unit of work: emit the activities a new lead's statement claimed
    for it (their ids), in the order they happened, sealed with its `key`; returns how many."""
    claimed = await store.activities_by_id(uow.conn, activity_ids)
    return await _emit_claimed(uow, lead_id, claimed, key=key)


async def _emit_claimed(
    uow: UnitOfWork, lead_id: UUID, waiting: list[StoredActivity], *, key: bytes | None
) -> int:
    if not waiting:
        return 0
    sealing = any(a.details.get("properties") or a.details.get("page_url") for a in waiting)
    if key is None and sealing:
        key = (await store.data_keys(uow.conn, [lead_id])).get(lead_id)
    for activity in waiting:
        await uow.emit(activity_event(activity, lead_id, key))
    return len(waiting)


async def notes(pool: asyncpg.Pool, lead_id: UUID) -> NotesOut:
    """A person's calls, meetings, events and notes as logged (the words travel only sealed,
    so the team reads them here); 404 unknown, 410 erased."""
    async with pool.acquire() as conn:
        erased = await store.lead_status(conn, lead_id)
        if erased is None:
            raise not_found("lead", "lead_id", lead_id)
        if erased:
            raise field_problem(
                410,
                "Lead erased",
                "the person was erased; nothing of them is kept",
                type_="urn:funnel:problem:erased",
                field="lead_id",
                message="erased",
            )
        found = await store.offline_touches(conn, lead_id, OFFLINE_ACTIVITY_TYPES, MAX_NOTES)
    return NotesOut(items=[note_of(a) for a in found])
