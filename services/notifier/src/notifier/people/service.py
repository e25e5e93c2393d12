"""People's use cases: remember what a lead event says (in the consumer's transaction, with
no network call), and resolve sealed contacts once their data key can be fetched."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from funnel_contracts.lead_reader import LeadDetails
from funnel_contracts.sealed import PersonalData, SealError, unseal
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from notifier.people import store
from notifier.people.data_keys import DataKeys, KeyServiceRefused, KeyServiceUnavailable
from notifier.people.models import PendingContact
from notifier.wake import CONTACTS_CHANNEL, TOUCHES_CHANNEL, notify

log = logging.getLogger(__name__)


class Known:
    """What the event handlers ask of almost every event (is the lead erased, a test lead?)
    and the wake-ups their work calls for.

    `Known(conn)` asks the database each time and wakes at once (one event in its own
    savepoint). `Known.load` reads the answers for a whole poll batch's leads in one
    statement, keeps them up to date as the batch erases or marks leads, sends each
    wake-up once at `flush` (a NOTIFY is delivered at commit either way), and keeps the
    batch's sealed contacts until then, to write them in one statement (before an erasure
    in the batch, which deletes a person's waiting rows; nothing else in the consumer reads
    them, and the contact resolver sees them at commit either way). Only the consumer
    writes these two tables, and the batch's own erasures and marks update the copy; another
    replica's commit during the batch is seen as if the batch had run a moment earlier.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        *,
        erased: set[UUID] | None = None,
        tests: set[UUID] | None = None,
        playbooks_revision: int | None = None,
    ) -> None:
        self.conn = conn
        self._erased = erased
        self._tests = tests
        self._batched = erased is not None
        self._wake: set[str] = set()
        #: The playbooks' revision as the batch's read saw it (None: not read).
        self.playbooks_revision = playbooks_revision
        #: Leads whose sealed contact this batch left for the contact resolver: their
        #: touches cannot go before it stores the contact, and it wakes the sender then.
        self.contact_pending: set[UUID] = set()
        self._pending: list[store.NewPending] = []

    @classmethod
    async def load(cls, conn: asyncpg.Connection, lead_ids: Iterable[UUID]) -> Known:
        erased, tests, revision = await store.erased_and_test(conn, list(set(lead_ids)))
        return cls(conn, erased=erased, tests=tests, playbooks_revision=revision)

    async def is_erased(self, lead_id: UUID) -> bool:
        if self._erased is None:
            return await store.is_erased(self.conn, lead_id)
        return lead_id in self._erased

    async def is_test(self, lead_id: UUID) -> bool:
        if self._tests is None:
            return await store.is_test(self.conn, lead_id)
        return lead_id in self._tests

    async def keep_pending(self, row: store.NewPending) -> None:
        """Leave a sealed contact for the contact resolver (woken at commit): now, or with
        the batch's others at `flush`."""
        self.contact_pending.add(row.lead_id)
        if self._batched:
            self._pending.append(row)
        else:
            await store.add_pending(self.conn, [row], wake=CONTACTS_CHANNEL)

    async def _write_pending(self) -> None:
        rows, self._pending = self._pending, []
        await store.add_pending(self.conn, rows, wake=CONTACTS_CHANNEL)

    async def erase(self, lead_id: UUID) -> None:
        await self._write_pending()  # the erasure deletes the person's waiting rows too
        await store.erase(self.conn, lead_id)
        if self._erased is not None:
            self._erased.add(lead_id)

    async def mark_test(self, lead_id: UUID) -> None:
        await store.mark_test(self.conn, lead_id)
        if self._tests is not None:
            self._tests.add(lead_id)

    async def fold_test(self, survivor: UUID, other: UUID) -> None:
        """A merge: the survivor stays a test lead only when the other is one too (a real
        person merged with a test lead is real, and touched again)."""
        if await self.is_test(survivor) and not await self.is_test(other):
            await store.unmark_test(self.conn, survivor)
            if self._tests is not None:
                self._tests.discard(survivor)

    async def wake(self, channel: str) -> None:
        """Wake `channel`'s loop at commit: now, or once at `flush` for a batch."""
        if self._batched:
            self._wake.add(channel)
        else:
            await notify(self.conn, channel)

    async def flush(self) -> None:
        await self._write_pending()
        for channel in sorted(self._wake):
            await notify(self.conn, channel)
        self._wake.clear()


async def remember_person(
    uow: UnitOfWork, details: LeadDetails, known: Known | None = None
) -> None:
    """A captured or updated lead: its contact (a v1 event's at once, a v2 event's sealed data
    left for the contact resolver) and the consent categories it grants."""
    conn, lead_id = uow.conn, details.lead_id
    known = known or Known(conn)
    if await known.is_erased(lead_id):
        return  # the person asked to be forgotten; a late event must not bring them back
    if details.sealed is not None:
        await known.keep_pending(
            store.NewPending(
                lead_id, details.event_type, details.sealed, details.locale, details.time_zone
            )
        )
    else:
        person = details.person(None)
        await store.upsert_contact(
            conn,
            lead_id,
            email=person.email if person else None,
            first_name=person.first_name if person else None,
            locale=details.locale,
            time_zone=details.time_zone,
        )
    consent = details.consent
    if consent is not None and consent.categories:
        await store.set_consents(
            conn,
            lead_id,
            consent.categories,
            granted=True,
            source=f"form:{details.form_id}" if details.form_id else details.source,
            at=consent.given_at or details.at,
        )
    if details.consent_withdrawn:
        # Withdrawn by hand at lead-intake (a colleague recorded it): the touches that need
        # these categories are suppressed from now on, as after an unsubscribe.
        await store.set_consents(
            conn,
            lead_id,
            details.consent_withdrawn,
            granted=False,
            source=details.source,
            at=details.at,
        )
    if details.sealed is None:
        # Touches scheduled before the contact was known can go now (or the consent they
        # are checked against changed). A sealed contact is not known yet: the contact
        # resolver stores it (with the consent recorded here already) and wakes the sender
        # then; a wake-up now would find nothing new to send.
        await known.wake(TOUCHES_CHANNEL)


async def open_contact(pending: PendingContact, keys: DataKeys) -> PersonalData | None:
    """The sealed personal data opened with the lead's key, asked of lead-intake (a network
    call: no transaction is open); None when the lead is erased or unknown there."""
    key = await keys.key_of(pending.lead_id)
    return None if key is None else _unseal(pending, key)


async def open_contacts(
    batch: list[PendingContact], keys: DataKeys, key_requests: int
) -> list[PersonalData | BaseException | None]:
    """`open_contact` for each row of a batch, their keys asked of lead-intake in one call
    (no transaction is open); a row's failure is its own result. An intake without the batch
    call is asked one lead at a time, `key_requests` at once."""
    try:
        found = await keys.keys_of([p.lead_id for p in batch])
    except (KeyServiceUnavailable, KeyServiceRefused) as exc:
        return [exc for _ in batch]
    if found is None:
        slots = asyncio.Semaphore(key_requests)

        async def opened_one(pending: PendingContact) -> PersonalData | None:
            async with slots:
                return await open_contact(pending, keys)

        return await asyncio.gather(*(opened_one(p) for p in batch), return_exceptions=True)
    opened: list[PersonalData | BaseException | None] = []
    for pending in batch:
        key = found[pending.lead_id]
        try:
            opened.append(None if key is None else _unseal(pending, key))
        except SealError as exc:
            opened.append(exc)
    return opened


def _unseal(pending: PendingContact, key: bytes) -> PersonalData:
    return unseal(pending.sealed, key=key, lead_id=pending.lead_id, event_type=pending.event_type)


@dataclass(frozen=True)
class Resolving:
    """How the contact resolver works through waiting rows."""

    batch_size: int
    #: Key requests in flight at once to an intake without the batch call (it sheds load
    #: past its own cap); with it, a batch's keys are one request.
    key_requests: int
    lease_seconds: float
    #: Seconds before the next try of a row that failed `attempts` times.
    backoff: Callable[[int], float]


@dataclass(frozen=True)
class Resolved:
    """A resolver batch: how many rows it took, and when the next one may be tried
    (seconds from now, as its claim and its failures told; None: none waits)."""

    taken: int
    next_in: float | None


async def resolve_contacts(tx: Transactions, keys: DataKeys, how: Resolving) -> Resolved:
    """One batch: lease waiting rows (one statement, no transaction), fetch their keys with
    no transaction open, then store every opened contact in one statement (nothing for a
    lead erased here meanwhile; a contact with no address for one intake has no key for);
    a row that did not open is tried again later, or parked, in a transaction of its own."""
    async with tx.pool.acquire() as conn:
        claim = await store.claim_pending_batch(conn, how.batch_size, how.lease_seconds)
    batch, next_in = claim.rows, claim.next_in
    if not batch:
        return Resolved(0, next_in)
    opened = await open_contacts(batch, keys, how.key_requests)
    done: list[store.Opened] = []
    for pending, person in zip(batch, opened, strict=True):
        if isinstance(person, BaseException):
            delay = await tx.run(
                functools.partial(_not_opened, pending=pending, error=person, how=how)
            )
            if delay is not None:
                next_in = delay if next_in is None else min(next_in, delay)
        else:
            done.append(
                store.Opened(
                    pending,
                    email=person.email if person else None,
                    first_name=person.first_name if person else None,
                    has_person=person is not None,
                )
            )
    if done:
        # Stored unless erased, their waiting touches woken: one statement (atomic alone).
        async with tx.pool.acquire() as conn:
            await store.store_opened_contacts(conn, done, wake=TOUCHES_CHANNEL)
    return Resolved(len(batch), next_in)


async def store_contact(
    uow: UnitOfWork, pending: PendingContact, person: PersonalData | None
) -> bool:
    """Store the opened contact and wake the sender; True if stored. Nothing is kept when the
    lead was erased here meanwhile: erasure wins. No person (`person` None: erased or
    unknown at intake) stores a contact with no address unless one is known."""
    opened = store.Opened(
        pending,
        email=person.email if person else None,
        first_name=person.first_name if person else None,
        has_person=person is not None,
    )
    stored = await store.store_opened_contacts(uow.conn, [opened], wake=TOUCHES_CHANNEL)
    return pending.lead_id in stored


async def _not_opened(
    uow: UnitOfWork, pending: PendingContact, error: BaseException, how: Resolving
) -> float | None:
    """Park the row or try it again after a backoff; returns that delay (None: parked)."""
    if isinstance(error, SealError):
        # No try will ever open it (a blob sealed for another event or key): kept, parked.
        log.error("sealed personal data does not open", extra={"lead_id": str(pending.lead_id)})
        await store.park_pending(uow.conn, pending.id, f"seal: {error}", wake=TOUCHES_CHANNEL)
        return None
    if not isinstance(error, KeyServiceUnavailable | KeyServiceRefused):
        raise error
    delay = how.backoff(pending.attempts)
    level = logging.WARNING if isinstance(error, KeyServiceUnavailable) else logging.ERROR
    log.log(
        level,
        "data key not fetched; trying again later",
        extra={"lead_id": str(pending.lead_id), "error": str(error), "retry_in": delay},
    )
    await store.retry_pending(uow.conn, pending.id, str(error), delay_s=delay)
    return delay


async def next_pending_in(tx: Transactions) -> float | None:
    """Seconds until the next waiting row may be tried; None when none waits."""
    async with tx.pool.acquire() as conn:
        return await store.next_pending_in_seconds(conn)
