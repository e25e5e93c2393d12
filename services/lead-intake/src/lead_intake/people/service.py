"""A person read, found and corrected by the team; everyone indexed again (a CLI command)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from funnel_servicekit.problems import Problem, conflict, field_problem, invalid, not_found
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from lead_intake.activities.service import emit_waiting
from lead_intake.common.blind_index import BlindIndex, query_words
from lead_intake.common.normalize import normalize_email, normalize_phone
from lead_intake.leads import store as leads_store
from lead_intake.people import store
from lead_intake.people.models import (
    PeoplePage,
    PersonOut,
    PersonPatch,
    Search,
    consent_changes,
    corrected,
    correction_event,
)


def _erased() -> Problem:
    return field_problem(
        410,
        "Lead erased",
        "the person was erased; nothing of them is kept",
        type_="urn:funnel:problem:erased",
        field="lead_id",
        message="erased",
    )


def _found(found: PersonOut | bool | None, lead_id: UUID) -> PersonOut:
    if found is None:
        raise not_found("lead", "lead_id", lead_id)
    if found is False:
        raise _erased()
    assert isinstance(found, PersonOut)
    return found


async def person(pool: asyncpg.Pool, lead_id: UUID) -> PersonOut:
    """The person whole (one query); 404 unknown, 410 erased."""
    async with pool.acquire() as conn:
        return _found(await store.person(conn, lead_id), lead_id)


def search_of(
    index: BlindIndex,
    *,
    email: str | None,
    phone: str | None,
    q: str | None,
    after: UUID | None,
    limit: int,
    ids: list[UUID] | None = None,
) -> Search:
    """What to look up for exactly one of id, email, phone or q; 422 naming the field at
    fault."""
    given = [
        name for name, value in (("id", ids), ("email", email), ("phone", phone), ("q", q)) if value
    ]
    if len(given) != 1:
        raise invalid(given[1] if given else "q", "give exactly one of id, email, phone or q")
    if ids:
        return Search([], after, limit, ids=sorted(set(ids)))
    try:
        if email:
            digests = [index.email(normalize_email(email))]
        elif phone:
            digests = [index.phone(normalize_phone(phone, None))]
        else:
            assert q is not None
            digests = [index.prefix(word) for word in query_words(q)]
    except ValueError as exc:
        raise invalid(given[0], str(exc)) from None
    return Search(digests, after, limit)


async def find_people(pool: asyncpg.Pool, search: Search) -> PeoplePage:
    """A page of the people matching, in lead id order; `next_after` while more remain."""
    async with pool.acquire() as conn:
        found = await (store.by_ids(conn, search) if search.ids else store.find(conn, search))
    more = len(found) > search.limit
    items = found[: search.limit]
    return PeoplePage(items=items, next_after=items[-1].lead_id if more else None)


async def correct(
    transactions: Transactions,
    index: BlindIndex,
    lead_id: UUID,
    patch: PersonPatch,
    *,
    actor: str,
) -> PersonOut:
    """Correct a person in one unit of work: their details, consent, search index entries and
    a funnel.lead.updated.v2 (source "manual"); 409 when the email or phone is another's."""

    async def work(uow: UnitOfWork) -> PersonOut:
        conn = uow.conn
        if patch.phone is not None:
            # Before the lead's row, in the order a capture by phone takes them.
            await leads_store.lock_phone(conn, patch.phone)
        current = await store.lock_contact(conn, lead_id)
        if current is None:
            raise not_found("lead", "lead_id", lead_id)
        if current is False:
            raise _erased()
        assert not isinstance(current, bool)
        new = corrected(current, patch)
        if new.email is None and new.phone is None:
            field = "email" if "email" in patch.model_fields_set else "phone"
            raise invalid(field, "a person keeps an email or a phone")
        if (
            new.email
            and new.email != current.email
            and await store.email_taken(conn, new.email, lead_id)
        ):
            raise conflict("another lead has this email", field="email")
        if (
            new.phone
            and new.phone != current.phone
            and await store.phone_taken(conn, new.phone, lead_id)
        ):
            raise conflict("another lead has this phone", field="phone")
        now = datetime.now(UTC)
        changes = consent_changes(patch.consent, at=now, actor=actor) if patch.consent else {}
        try:
            async with conn.transaction():  # a savepoint: a lost race is a 409, not a 500
                await store.correct(conn, lead_id, new, changes)
        except asyncpg.UniqueViolationError:
            raise conflict("another lead has this email", field="email") from None
        await leads_store.index_person(
            conn,
            lead_id,
            index.person_terms(
                email=new.email, phone=new.phone, first_name=new.first_name, last_name=new.last_name
            ),
        )
        key = await leads_store.key_for(conn, lead_id)
        granted = patch.consent.granted if patch.consent else []
        withdrawn = patch.consent.withdrawn if patch.consent else []
        await uow.emit(
            correction_event(
                lead_id, new, granted=granted, withdrawn=withdrawn, key=key, actor=actor, at=now
            )
        )
        if new.email is not None and new.email != current.email:
            # What waited for this email (activities reported before anyone gave it) is theirs.
            await emit_waiting(uow, lead_id, visitor_id=None, email=new.email)
        return _found(await store.person(conn, lead_id), lead_id)

    return await transactions.run(work)


async def index_everyone(conn: asyncpg.Connection, index: BlindIndex, *, batch: int = 500) -> int:
    """Every person (not erased) indexed again, a batch per transaction; returns how many.

    For leads captured before the index existed, and after the search key changed.
    """
    after: UUID | None = None
    total = 0
    while True:
        async with conn.transaction():
            people = await store.people_to_index(conn, after, batch)
            for lead_id, email, phone, first_name, last_name in people:
                terms = index.person_terms(
                    email=email, phone=phone, first_name=first_name, last_name=last_name
                )
                await leads_store.index_person(conn, lead_id, terms)
        total += len(people)
        if len(people) < batch:
            return total
        after = people[-1][0]
