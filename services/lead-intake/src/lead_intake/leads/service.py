"""Capturing a person: one unit of work writes the lead, the submission and their events.

Shared by form posts, imports and ad-platform adapters, so every way a lead arrives
follows the same identity rules and emits the same contract events.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from funnel_contracts import Consent, LeadMerged
from funnel_contracts.sealed import new_data_key
from funnel_servicekit.outbox import OutboxRecord, enqueue_many, outbox_record, outbox_records
from funnel_servicekit.problems import field_error, field_problem
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from lead_intake.activities.models import email_sha256
from lead_intake.activities.service import emit_claimed, emit_waiting, first_tagged_visit
from lead_intake.common.blind_index import BlindIndex
from lead_intake.forms.models import Form
from lead_intake.leads import store
from lead_intake.leads.models import (
    Captured,
    Lead,
    MergeRefused,
    Submission,
    SubmissionInvalid,
    SubmissionOrigin,
    Touchpoint,
    lead_event,
    merge_order,
    merge_update_event,
    merged_fields,
)


async def capture(
    uow: UnitOfWork,
    form: Form,
    sub: Submission,
    *,
    source: str,
    captured_at: datetime,
    index: BlindIndex,
    user_agent: str | None = None,
    ip_truncated: str | None = None,
    update_known: bool = True,
    imported_stage: str | None = None,
    stage_entered_at: datetime | None = None,
    ready: store.ReadyLead | None = None,
) -> Captured:
    """Inside the caller's unit of work: the lead (new or known), its submission, its events.

    A new person emits funnel.lead.captured.v2; a known one funnel.lead.updated.v2 (first
    touchpoint kept, last touchpoint updated), the personal data sealed with the person's key.
    A visitor id links the visitor's anonymous activities, which are emitted now with their
    original event times. A phone alone finds a known person or captures a new one. The
    person's search index entries follow their latest details (`index`). `ready`: the
    person as `prepare_person` made them for this submission, if it did.
    """
    conn = uow.conn
    terms = (
        ready.made.terms
        if ready is not None
        else index.person_terms(
            email=sub.email, phone=sub.phone, first_name=sub.first_name, last_name=sub.last_name
        )
    )
    # A new lead and its submission go in one statement (one round trip fewer per new person).
    origin = SubmissionOrigin(form.id, user_agent, ip_truncated)
    # An anonymous visitor's first tagged visit is the person's first touch, if they are new.
    visit = await first_tagged_visit(conn, sub.visitor_id) if sub.visitor_id else None
    lead = None
    if sub.email is not None and sub.visitor_id is None:
        # Nothing to read first: the new person, their event and what waited for their email
        # in one statement (their event made now, kept only if they are new).
        ready = ready or _ready_lead(
            form, sub, origin, source=source, captured_at=captured_at, terms=terms,
            imported_stage=imported_stage, stage_entered_at=stage_entered_at,
            outbox_source=uow.outbox.source,
        )  # fmt: skip
        made = await store.create_person(conn, ready, outbox_schema=uow.outbox.schema)
        if made is not None:
            return await _after_new_person(
                uow, made, sub, source=source, at=captured_at, index=index
            )
    elif sub.email is not None:
        lead = await store.create_lead(
            conn, sub, source=source, captured_at=captured_at, submission=origin, terms=terms
        )
    elif sub.phone is not None:
        # Identity by phone alone: two first posts with one number queue here, so the
        # second finds the lead the first made instead of making another.
        await store.lock_phone(conn, sub.phone)
    if lead is None and not update_known:
        if sub.email is not None:
            known = await store.lead_ids_by_email(conn, sub.email)
        else:
            known = await store.lead_ids_by_phone(conn, sub.phone) if sub.phone else []
        if known:
            return Captured(known[0], None, False)
        if sub.email is not None:
            _needs_email()  # unreachable: the insert above found the email taken
    if lead is None:
        lead = await store.update_known_lead(conn, sub)
    if lead is None and sub.email is None and sub.phone is not None:
        # A phone no lead has: a new person known by phone alone.
        lead = await store.create_lead(
            conn, sub, source=source, captured_at=captured_at, submission=origin, terms=terms
        )
    if lead is None:
        _needs_email()
    assert lead is not None
    submission_id = lead.submission_id  # written with a new lead; a known one's is added now
    if submission_id is None:
        # A known person: their details may have changed (a name given now, a phone added).
        await store.index_person(
            conn,
            lead.id,
            index.person_terms(
                email=lead.email,
                phone=lead.phone,
                first_name=lead.first_name,
                last_name=lead.last_name,
            ),
        )
        submission_id = await store.insert_submission(
            conn,
            lead.id,
            form.id,
            sub,
            source=source,
            user_agent=user_agent,
            ip_truncated=ip_truncated,
            captured_at=captured_at,
        )
    if lead.created and visit is not None and visit[2] <= captured_at:
        utm, page, _ = visit
        first = Touchpoint(utm=utm, landing_page=page or sub.touchpoint.landing_page)
        await store.set_first_touch(conn, lead.id, first)
        sub = dataclasses.replace(sub, touchpoint=first)  # the capture's UTM: the first touch
    # The person's details travel sealed under their own key, destroyed on erasure.
    key = lead.data_key or await store.key_for(conn, lead.id)
    await uow.emit(
        lead_event(
            lead,
            sub,
            form,
            key=key,
            submission_id=submission_id,
            source=source,
            at=captured_at,
            imported_stage=imported_stage if lead.created else None,
            stage_entered_at=stage_entered_at,
        )
    )
    if sub.visitor_id is not None or lead.created:
        # What the person did before: as an anonymous visitor, or named by an email no lead had.
        await emit_waiting(
            uow,
            lead.id,
            visitor_id=sub.visitor_id,
            email=lead.email if lead.created else None,
        )
    return await _merged_by_phone(
        uow, lead, submission_id, sub, source=source, at=captured_at, index=index
    )


async def _merged_by_phone(
    uow: UnitOfWork,
    lead: Lead,
    submission_id: UUID,
    sub: Submission,
    *,
    source: str,
    at: datetime,
    index: BlindIndex,
) -> Captured:
    """The capture's outcome, after merging the person known by this phone alone, if any."""
    if sub.email is not None and sub.phone is not None and source != IMPORT:
        # The same phone on a lead found by email: a person known by that phone alone is
        # this person (an import never merges by itself: its rows are other tools' records).
        merged = await merge_same_phone(uow, lead.id, sub.phone, at=at, index=index)
        if merged:
            return Captured(merged[-1].lead_id, submission_id, lead.created)
    return Captured(lead.id, submission_id, lead.created)


def prepare_person(
    form: Form,
    sub: Submission,
    origin: SubmissionOrigin,
    *,
    source: str,
    captured_at: datetime,
    index: BlindIndex,
    outbox_source: str,
) -> store.ReadyLead:
    """A post's person made ready for `write_people` (pure CPU, in the caller's task and
    trace, before any transaction): written by `capture`'s rules if their email is new."""
    terms = index.person_terms(
        email=sub.email, phone=sub.phone, first_name=sub.first_name, last_name=sub.last_name
    )
    return _ready_lead(
        form, sub, origin, source=source, captured_at=captured_at, terms=terms,
        imported_stage=None, stage_entered_at=None, outbox_source=outbox_source,
    )  # fmt: skip


def takes_ready_person(sub: Submission) -> bool:
    """Whether `prepare_person` and `write_people` capture this submission as `capture`
    would when its email is new: an email, and no visitor whose first visit could be the
    person's first touch."""
    return sub.email is not None and sub.visitor_id is None


def _ready_lead(
    form: Form,
    sub: Submission,
    origin: SubmissionOrigin,
    *,
    source: str,
    captured_at: datetime,
    terms: list[bytes],
    imported_stage: str | None,
    stage_entered_at: datetime | None,
    outbox_source: str,
) -> store.ReadyLead:
    assert sub.email is not None
    made = store.NewLead(uuid4(), uuid4(), new_data_key(), sub, captured_at, terms)
    event = lead_event(
        Lead(made.id, sub.email, sub.phone, sub.first_name, sub.last_name, captured_at, True),
        sub,
        form,
        key=made.data_key,
        submission_id=made.submission_id,
        source=source,
        at=captured_at,
        imported_stage=imported_stage,
        stage_entered_at=stage_entered_at,
    )
    return store.ReadyLead(
        made, origin, source, outbox_record(event, source=outbox_source), email_sha256(sub.email)
    )


async def write_people(
    uow: UnitOfWork, people: list[store.ReadyLead], *, index: BlindIndex
) -> list[Captured | None]:
    """Inside the caller's unit of work: people made ready by `prepare_person`, written in
    one statement (`store.create_people`), then what follows each new one (`capture`'s
    rules). None for a person whose email was known (nothing of them written): their post
    is then a returning person's, for `capture`."""
    written = await store.create_people(uow.conn, people, outbox_schema=uow.outbox.schema)
    captured: list[Captured | None] = []
    for ready in people:
        made = ready.made
        waiting = written.get(made.id)
        if waiting is None:
            captured.append(None)
            continue
        sub = made.sub
        lead = Lead(
            made.id, sub.email, sub.phone, sub.first_name, sub.last_name, made.captured_at,
            True, made.submission_id, made.data_key,
        )  # fmt: skip
        captured.append(
            await _after_new_person(
                uow, (lead, waiting), sub, source=ready.source, at=made.captured_at, index=index
            )
        )
    return captured


async def _after_new_person(
    uow: UnitOfWork,
    made: tuple[Lead, list[UUID]],
    sub: Submission,
    *,
    source: str,
    at: datetime,
    index: BlindIndex,
) -> Captured:
    """What follows a new person's statement: the activities that waited for their email
    emitted after their capture, and a person known by their phone alone merged."""
    lead, waiting = made
    assert lead.submission_id is not None
    if waiting:
        await emit_claimed(uow, lead.id, waiting, key=lead.data_key)
    return await _merged_by_phone(
        uow, lead, lead.submission_id, sub, source=source, at=at, index=index
    )


IMPORT = "import"


@dataclass(frozen=True)
class NewPerson:
    """A person a batch captures, if nobody has their email yet (an import's row)."""

    sub: Submission
    captured_at: datetime
    imported_stage: str | None = None
    stage_entered_at: datetime | None = None


@dataclass(frozen=True)
class ReadyPerson:
    """A new person made ready ahead of the transaction that writes them (`prepare_new`):
    ids, data key, index entries, their sealed funnel.lead.captured.v2 encoded for the outbox,
    and the values of their rows. Nothing here reads the database: whether the person is
    new after all is for `write_new` to find, inside the transaction."""

    lead_id: UUID
    email: str | None
    row: tuple[Any, ...]
    record: OutboxRecord


def prepare_new(
    form: Form, people: list[NewPerson], *, source: str, index: BlindIndex, outbox_source: str
) -> list[ReadyPerson]:
    """Pure CPU work for new people by email (an import's batch, made while the batch before
    it is written): the same rules and the same funnel.lead.captured.v2 as `capture`. The
    events share one producer span (each carries its context), not one each."""
    made = [
        store.NewLead(
            uuid4(),
            uuid4(),
            new_data_key(),
            p.sub,
            p.captured_at,
            index.person_terms(
                email=p.sub.email,
                phone=p.sub.phone,
                first_name=p.sub.first_name,
                last_name=p.sub.last_name,
            ),
        )
        for p in people
    ]
    events = [
        lead_event(
            _new_lead(new.id, p),
            p.sub,
            form,
            key=new.data_key,
            submission_id=new.submission_id,
            source=source,
            at=p.captured_at,
            imported_stage=p.imported_stage,
            stage_entered_at=p.stage_entered_at,
        )
        for p, new in zip(people, made, strict=True)
    ]
    records = outbox_records(events, source=outbox_source)
    return [
        ReadyPerson(new.id, new.sub.email, store.new_lead_row(new), record)
        for new, record in zip(made, records, strict=True)
    ]


async def write_new(
    uow: UnitOfWork, people: list[ReadyPerson], *, source: str, form: Form
) -> list[UUID | None]:
    """Inside the caller's unit of work: people made ready by `prepare_new` whom nobody had
    and nothing waits for (the caller checks, in this transaction): their leads, submissions,
    keys and index entries in one statement, their events in one more. A person whose email
    was taken meanwhile gets None (and no event)."""
    written = await store.create_leads(
        uow.conn, [p.row for p in people], source=source, form_id=form.id
    )
    await enqueue_many(
        uow.conn, uow.outbox.schema, [p.record for p in people if p.lead_id in written]
    )
    return [p.lead_id if p.lead_id in written else None for p in people]


def _new_lead(lead_id: UUID, person: NewPerson) -> Lead:
    sub = person.sub
    return Lead(
        lead_id, sub.email, sub.phone, sub.first_name, sub.last_name, person.captured_at, True
    )


async def known_by_email(uow: UnitOfWork, emails: list[str]) -> dict[str, UUID]:
    """The leads of those of these emails that are known."""
    return await store.ids_by_email(uow.conn, emails)


def _needs_email() -> Captured:
    raise SubmissionInvalid([field_error("email", "required for a person not known yet by phone")])


async def fill_known(
    uow: UnitOfWork,
    form: Form,
    lead_id: UUID,
    sub: Submission,
    *,
    source: str,
    at: datetime,
    index: BlindIndex,
) -> bool:
    """An import's `on_existing=update`: fill the known person's empty fields from `sub` and
    take its consent when it is newer; never overwrite a value, never blank one. When that
    changed anything: a submission, funnel.lead.updated.v2 with the details as they now are,
    the search index. Returns whether it changed anything."""
    conn = uow.conn
    filled = await store.fill_lead(conn, lead_id, sub)
    if filled is None:
        return False
    lead, details = filled
    await store.index_person(
        conn,
        lead.id,
        index.person_terms(
            email=lead.email, phone=lead.phone, first_name=lead.first_name, last_name=lead.last_name
        ),
    )
    submission_id = await store.insert_submission(
        conn,
        lead.id,
        form.id,
        sub,
        source=source,
        user_agent=None,
        ip_truncated=None,
        captured_at=at,
    )
    key = await store.key_for(conn, lead.id)
    await uow.emit(
        lead_event(lead, details, form, key=key, submission_id=submission_id, source=source, at=at)
    )
    return True


@dataclass(frozen=True)
class Merged:
    lead_id: UUID
    merged_lead_id: UUID


async def merge(
    uow: UnitOfWork,
    lead_id: UUID,
    other_id: UUID,
    *,
    reason: str,
    actor: str | None,
    at: datetime,
    index: BlindIndex,
) -> Merged:
    """Inside the caller's unit of work: two leads proved to be one person. The older
    survives; the other's submissions, activities, touchpoints (its submissions) and consent
    fold into it; the other answers with `merged_into` from now on. Emits funnel.lead.merged
    (every service folds the two) and funnel.lead.updated.v2 with the survivor's details as
    they now are (source `merge`). MergeRefused when it cannot be made; never undone."""
    conn = uow.conn
    rows = await store.lock_leads(conn, [lead_id, other_id])
    survivor, other = merge_order(rows.get(lead_id), rows.get(other_id), lead_id, other_id)
    fields = merged_fields(survivor, other)
    consent = fields["consent"]
    lead = await store.fold(conn, survivor["id"], other["id"], dict(fields))
    await store.index_person(
        conn,
        lead.id,
        index.person_terms(
            email=lead.email, phone=lead.phone, first_name=lead.first_name, last_name=lead.last_name
        ),
    )
    await uow.emit(
        LeadMerged(
            lead_id=lead.id, merged_lead_id=other["id"], reason=reason, actor=actor, merged_at=at
        )
    )
    details = Submission(
        email=lead.email,
        phone=lead.phone,
        first_name=lead.first_name,
        last_name=lead.last_name,
        consent=Consent.model_validate(consent) if consent else None,
        locale=fields["locale"],
        time_zone=fields["time_zone"],
        custom_fields=fields["custom_fields"],
    )
    key = await store.key_for(conn, lead.id)
    await uow.emit(merge_update_event(lead, details, key=key, at=at))
    return Merged(lead.id, other["id"])


async def merge_same_phone(
    uow: UnitOfWork, lead_id: UUID, phone: str, *, at: datetime, index: BlindIndex
) -> list[Merged]:
    """A submission gave `phone` to the lead found by its email: a person known before by
    that phone alone is the same person, merged by itself (reason `same_phone`)."""
    merged = []
    for other in await store.phone_only_leads(uow.conn, phone, lead_id):
        merged.append(
            await merge(uow, lead_id, other, reason="same_phone", actor=None, at=at, index=index)
        )
        lead_id = merged[-1].lead_id
    return merged


async def merge_leads(
    tx: Transactions, lead_id: UUID, other_id: UUID, *, actor: str, index: BlindIndex
) -> Merged:
    """POST /v1/leads/{lead_id}/merge: a person merges two leads (reason `manual`); the
    refusals as problems (422, 404, 410, 409) naming the field."""

    async def work(uow: UnitOfWork) -> Merged:
        return await merge(
            uow, lead_id, other_id, reason="manual", actor=actor, at=datetime.now(UTC),
            index=index,
        )  # fmt: skip

    try:
        return await tx.run(work)
    except MergeRefused as refused:
        raise field_problem(
            refused.status,
            "Merge refused",
            refused.message,
            type_=f"urn:funnel:problem:merge-{refused.status}",
            field=refused.field,
            message=refused.message,
        ) from None
