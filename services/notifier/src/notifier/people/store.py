"""What the notifier knows of each person: contact, consent per category, stage, activities,
and the sealed personal data still waiting for its data key."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from funnel_contracts.events import Sealed
from notifier.people.models import PendingContact

# A contact written from $1-$5 (lead, email, first name, locale, time zone): a value an update
# does not carry keeps the known one.
_INSERT_CONTACT = "INSERT INTO contacts (lead_id, email, first_name, locale, time_zone)"
_KEEP_KNOWN = """
    ON CONFLICT (lead_id) DO UPDATE SET
        email = coalesce($2, contacts.email),
        first_name = coalesce($3, contacts.first_name),
        locale = coalesce($4, contacts.locale),
        time_zone = coalesce($5, contacts.time_zone),
        updated_at = now()
"""


async def upsert_contact(
    conn: asyncpg.Connection,
    lead_id: UUID,
    *,
    email: str | None,
    first_name: str | None,
    locale: str | None,
    time_zone: str | None,
) -> None:
    """Insert or update; a missing value in an update keeps the known one."""
    await conn.execute(
        f"{_INSERT_CONTACT} VALUES ($1, coalesce($2, ''), $3, $4, $5) {_KEEP_KNOWN}",
        lead_id,
        email,
        first_name,
        locale,
        time_zone,
    )


async def set_consents(
    conn: asyncpg.Connection,
    lead_id: UUID,
    categories: Iterable[str],
    *,
    granted: bool,
    source: str,
    at: datetime,
) -> list[str]:
    """Record consent per category; returns the categories whose value changed."""
    changed: list[str] = []
    for category in categories:
        row = await conn.fetchval(
            """INSERT INTO consents (lead_id, category, granted, source, changed_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (lead_id, category) DO UPDATE SET granted = excluded.granted,
                   source = excluded.source, changed_at = excluded.changed_at
               WHERE consents.granted IS DISTINCT FROM excluded.granted
               RETURNING true""",
            lead_id,
            category,
            granted,
            source,
            at,
        )
        if row:
            changed.append(category)
    return changed


async def set_owner(
    conn: asyncpg.Connection, lead_id: UUID, owner: str | None, at: datetime
) -> None:
    """The lead's owner since `at`, unless a later owner change is already known."""
    await conn.execute(
        """INSERT INTO lead_state (lead_id, owner, owner_changed_at) VALUES ($1, $2, $3)
           ON CONFLICT (lead_id) DO UPDATE SET owner = $2, owner_changed_at = $3
           WHERE lead_state.owner_changed_at IS NULL OR lead_state.owner_changed_at <= $3""",
        lead_id,
        owner,
        at,
    )


@dataclass(frozen=True)
class NewScore:
    """A lead's score: its temperature and points, as of `at`."""

    lead_id: UUID
    temperature: str
    score: float
    at: datetime


async def scores(
    conn: asyncpg.Connection, scored: Sequence[NewScore]
) -> dict[UUID, tuple[str | None, str | None, str | None]]:
    """Record each lead's score unless a later one is known (out-of-order safe), and return
    each lead's funnel, stage and last temperature as they were before it: one statement for
    any number of leads, one score each (each part of it sees the rows as they were before)."""
    assert len({s.lead_id for s in scored}) == len(scored), "one score per lead"
    rows = await conn.fetch(
        """WITH u AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::timestamptz[])
                   AS u (lead_id, temperature, score, at)),
           before AS (
               SELECT u.lead_id, s.funnel_id, s.stage, s.temperature
               FROM u CROSS JOIN LATERAL (
                   SELECT funnel_id, stage, temperature FROM lead_state
                   WHERE lead_id = u.lead_id OFFSET 0) AS s),
           scored AS (
               INSERT INTO lead_state (lead_id, temperature, score, scored_at)
               SELECT lead_id, temperature, score, at FROM u
               ON CONFLICT (lead_id) DO UPDATE SET temperature = excluded.temperature,
                   score = excluded.score, scored_at = excluded.scored_at
               WHERE lead_state.scored_at IS NULL
                   OR lead_state.scored_at <= excluded.scored_at)
           SELECT u.lead_id, b.funnel_id, b.stage, b.temperature
           FROM u LEFT JOIN before AS b ON b.lead_id = u.lead_id""",
        [s.lead_id for s in scored],
        [s.temperature for s in scored],
        [s.score for s in scored],
        [s.at for s in scored],
    )
    return {r["lead_id"]: (r["funnel_id"], r["stage"], r["temperature"]) for r in rows}


async def erase(conn: asyncpg.Connection, lead_id: UUID) -> None:
    """Remove the person: sealed data waiting for its key, contact details, consent records,
    state, activities, tasks. The waiting rows go first: a contact resolver that is storing
    one holds it, so this waits for it and then deletes the contact it stored."""
    for table in (
        "pending_contacts",
        "contacts",
        "consents",
        "lead_state",
        "lead_activities",
        "tasks",
    ):
        await conn.execute(f"DELETE FROM {table} WHERE lead_id = $1", lead_id)  # noqa: S608
    await conn.execute(
        "INSERT INTO erased_leads (lead_id) VALUES ($1) ON CONFLICT DO NOTHING", lead_id
    )


async def fold(
    conn: asyncpg.Connection, survivor: UUID, other: UUID, *, survivor_waiting: bool = False
) -> None:
    """A merge: what is known of `other` that the survivor lacks becomes the survivor's (its
    contact, the consent per category changed last, the last time of each activity). The
    other's empty address (no person there) is not copied onto a survivor whose own contact
    still waits to be opened (a waiting row, or `survivor_waiting`: the caller's batch left
    one it has not written yet): that would suppress the survivor's touches meanwhile."""
    await conn.execute(
        """INSERT INTO contacts (lead_id, email, first_name, locale, time_zone)
           SELECT $1, email, first_name, locale, time_zone FROM contacts
           WHERE lead_id = $2
             AND (email <> '' OR NOT $3 AND NOT EXISTS (
                 SELECT 1 FROM pending_contacts p
                 WHERE p.lead_id = $1 AND p.next_try_at < 'infinity'))
           ON CONFLICT (lead_id) DO UPDATE SET
               email = coalesce(nullif(contacts.email, ''), excluded.email),
               first_name = coalesce(contacts.first_name, excluded.first_name),
               locale = coalesce(contacts.locale, excluded.locale),
               time_zone = coalesce(contacts.time_zone, excluded.time_zone)""",
        survivor,
        other,
        survivor_waiting,
    )
    await conn.execute(
        """INSERT INTO consents (lead_id, category, granted, source, changed_at)
           SELECT $1, category, granted, source, changed_at FROM consents WHERE lead_id = $2
           ON CONFLICT (lead_id, category) DO UPDATE SET granted = excluded.granted,
               source = excluded.source, changed_at = excluded.changed_at
           WHERE consents.changed_at < excluded.changed_at""",
        survivor,
        other,
    )
    await conn.execute(
        """INSERT INTO lead_activities (lead_id, activity_type, last_at)
           SELECT $1, activity_type, last_at FROM lead_activities WHERE lead_id = $2
           ON CONFLICT (lead_id, activity_type) DO UPDATE
           SET last_at = greatest(lead_activities.last_at, excluded.last_at)""",
        survivor,
        other,
    )


async def mark_test(conn: asyncpg.Connection, lead_id: UUID) -> None:
    await conn.execute(
        "INSERT INTO test_leads (lead_id) VALUES ($1) ON CONFLICT DO NOTHING", lead_id
    )


async def unmark_test(conn: asyncpg.Connection, lead_id: UUID) -> None:
    await conn.execute("DELETE FROM test_leads WHERE lead_id = $1", lead_id)


async def is_test(conn: asyncpg.Connection, lead_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM test_leads WHERE lead_id = $1", lead_id))


async def erased_and_test(
    conn: asyncpg.Connection, lead_ids: list[UUID]
) -> tuple[set[UUID], set[UUID], int]:
    """Which of `lead_ids` are erased, which are test leads, and the playbooks' revision (so
    a batch learns whether its cached playbooks still hold without a statement of its own):
    one statement."""
    rows = await conn.fetch(
        """SELECT lead_id, true AS erased, NULL::bigint AS revision FROM erased_leads
           WHERE lead_id = ANY($1::uuid[])
           UNION ALL
           SELECT lead_id, false, NULL FROM test_leads WHERE lead_id = ANY($1::uuid[])
           UNION ALL
           SELECT NULL, NULL, revision FROM playbooks_revision""",
        lead_ids,
    )
    leads = [r for r in rows if r["revision"] is None]
    revision = next(int(r["revision"]) for r in rows if r["revision"] is not None)
    return (
        {r["lead_id"] for r in leads if r["erased"]},
        {r["lead_id"] for r in leads if not r["erased"]},
        revision,
    )


async def is_erased(conn: asyncpg.Connection, lead_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM erased_leads WHERE lead_id = $1", lead_id))


@dataclass(frozen=True)
class NewPending:
    """A sealed contact to keep for the contact resolver (one `pending_contacts` row)."""

    lead_id: UUID
    event_type: str
    sealed: Sealed
    locale: str | None
    time_zone: str | None


async def add_pending(conn: asyncpg.Connection, rows: Sequence[NewPending], *, wake: str) -> None:
    """Keep sealed contacts for the contact resolver, in the order given (a lead's rows are
    opened in that order), and NOTIFY `wake` at commit: one statement (a transaction's
    identical notifications are delivered once)."""
    if not rows:
        return
    await conn.execute(
        """WITH kept AS (
               INSERT INTO pending_contacts (lead_id, event_type, sealed, locale, time_zone)
               SELECT u.lead_id, u.event_type, u.sealed::jsonb, u.locale, u.time_zone
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                   WITH ORDINALITY AS u (lead_id, event_type, sealed, locale, time_zone, n)
               ORDER BY u.n
               RETURNING 1)
           SELECT pg_notify($6, '') WHERE EXISTS (SELECT 1 FROM kept)""",
        [r.lead_id for r in rows],
        [r.event_type for r in rows],
        [r.sealed.model_dump_json() for r in rows],
        [r.locale for r in rows],
        [r.time_zone for r in rows],
        wake,
    )


@dataclass(frozen=True)
class PendingBatch:
    """What one claim statement tells: the rows it leased, and when the next row not among
    them may be tried (seconds from now; 0: a leased row's lead has more rows, which may go
    once it is done; None: none waits)."""

    rows: list[PendingContact]
    next_in: float | None


async def claim_pending(
    conn: asyncpg.Connection, limit: int, lease_seconds: float
) -> list[PendingContact]:
    """Lease the oldest waiting row of up to `limit` leads (a lead's rows go in event order;
    SKIP LOCKED shares the work among replicas). One statement: no transaction needed."""
    return (await claim_pending_batch(conn, limit, lease_seconds)).rows


async def claim_pending_batch(
    conn: asyncpg.Connection, limit: int, lease_seconds: float
) -> PendingBatch:
    """`claim_pending`, and in the same statement when the next row may be tried (the
    resolver's sleep needs no query of its own)."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT id FROM pending_contacts pc
               WHERE next_try_at <= now() AND NOT EXISTS (
                   SELECT 1 FROM pending_contacts p
                   WHERE p.lead_id = pc.lead_id AND p.id < pc.id
                     AND p.next_try_at < 'infinity')
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED),
           claimed AS (
               UPDATE pending_contacts p SET attempts = p.attempts + 1,
                   next_try_at = now() + make_interval(secs => $2)
               FROM due WHERE p.id = due.id
               RETURNING p.id, p.lead_id, p.event_type, p.sealed, p.locale, p.time_zone,
                   p.attempts, EXISTS (SELECT 1 FROM pending_contacts m
                                       WHERE m.lead_id = p.lead_id AND m.id > p.id) AS more)
           SELECT claimed.*, n.next_in FROM (
               SELECT extract(epoch FROM min(next_try_at) - now()) AS next_in
               FROM pending_contacts pc
               WHERE next_try_at > now() AND next_try_at < 'infinity' AND NOT EXISTS (
                   SELECT 1 FROM pending_contacts p
                   WHERE p.lead_id = pc.lead_id AND p.id < pc.id
                     AND p.next_try_at < 'infinity')) AS n
           LEFT JOIN claimed ON true""",
        limit,
        float(lease_seconds),
    )
    claimed = [r for r in rows if r["id"] is not None]
    next_in = rows[0]["next_in"]
    wait = None if next_in is None else float(next_in)
    if any(r["more"] for r in claimed):
        wait = 0.0
    return PendingBatch(
        [
            PendingContact(
                id=r["id"],
                lead_id=r["lead_id"],
                event_type=r["event_type"],
                sealed=Sealed.model_validate(r["sealed"]),
                locale=r["locale"],
                time_zone=r["time_zone"],
                attempts=r["attempts"],
            )
            for r in sorted(claimed, key=lambda r: int(r["id"]))
        ],
        wait,
    )


@dataclass(frozen=True)
class Opened:
    """A waiting row's outcome: its contact opened (`has_person` False: erased or unknown at
    lead-intake, a contact with no address to store unless one is known)."""

    pending: PendingContact
    email: str | None
    first_name: str | None
    has_person: bool


async def store_opened_contacts(
    conn: asyncpg.Connection, opened: list[Opened], *, wake: str
) -> set[UUID]:
    """For a batch of opened rows (one per lead), in one statement: each waiting row taken
    (locking it against an erasure, which deletes those rows first; a row an erasure took
    is left alone), its contact stored as `upsert_contact` does unless the lead is erased,
    and `wake` notified at commit when any was stored. Returns the leads stored.

    A row with no person (lead-intake knows no key for the lead) stores a contact with no
    address unless a contact is known (which it leaves as it is): the person's touches are
    then claimed and suppressed as unreachable, rather than left scheduled and passed over
    by every claim."""
    if not opened:
        return set()
    rows = await conn.fetch(
        f"""WITH opened (id, lead_id, has_person, email, first_name, locale, time_zone) AS (
               SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bool[], $4::text[],
                                    $5::text[], $6::text[], $7::text[])),
           taken AS (
               DELETE FROM pending_contacts p USING opened o WHERE p.id = o.id RETURNING p.id),
           kept AS (
               SELECT o.* FROM opened o JOIN taken t ON t.id = o.id
               WHERE NOT EXISTS (SELECT 1 FROM erased_leads e WHERE e.lead_id = o.lead_id)),
           unreachable AS (
               {_INSERT_CONTACT}
               SELECT lead_id, '', NULL, locale, time_zone FROM kept WHERE NOT has_person
               ON CONFLICT (lead_id) DO NOTHING
               RETURNING lead_id),
           stored AS (
               {_INSERT_CONTACT}
               SELECT lead_id, coalesce(email, ''), first_name, locale, time_zone
               FROM kept WHERE has_person
               ON CONFLICT (lead_id) DO UPDATE SET
                   email = coalesce((SELECT o.email FROM opened o
                                     WHERE o.lead_id = excluded.lead_id), contacts.email),
                   first_name = coalesce(excluded.first_name, contacts.first_name),
                   locale = coalesce(excluded.locale, contacts.locale),
                   time_zone = coalesce(excluded.time_zone, contacts.time_zone),
                   updated_at = now()
               RETURNING lead_id)
           SELECT lead_id, pg_notify($8, '')
           FROM (SELECT lead_id FROM stored UNION ALL SELECT lead_id FROM unreachable) AS w""",  # noqa: S608 (fixed text)
        [o.pending.id for o in opened],
        [o.pending.lead_id for o in opened],
        [o.has_person for o in opened],
        [o.email for o in opened],
        [o.first_name for o in opened],
        [o.pending.locale for o in opened],
        [o.pending.time_zone for o in opened],
        wake,
    )
    return {r["lead_id"] for r in rows}


async def retry_pending(
    conn: asyncpg.Connection, pending_id: int, error: str, *, delay_s: float
) -> None:
    """Try the row again after `delay_s` seconds."""
    await conn.execute(
        """UPDATE pending_contacts SET last_error = $2,
               next_try_at = now() + make_interval(secs => $3)
           WHERE id = $1""",
        pending_id,
        error[:1000],
        float(delay_s),
    )


async def park_pending(conn: asyncpg.Connection, pending_id: int, error: str, *, wake: str) -> None:
    """A row no try will open: kept for a look (its error with it) and never tried again; it
    no longer holds back the lead's later rows. Unless the lead's contact is known, another
    of its rows waits, or the lead is erased, a contact with no address is stored, so its
    touches are claimed and suppressed as unreachable rather than left scheduled for good;
    `wake` is notified at commit then."""
    await conn.execute(
        """WITH parked AS (
               UPDATE pending_contacts SET last_error = $2, next_try_at = 'infinity'
               WHERE id = $1 RETURNING lead_id, locale, time_zone),
           stored AS (
               INSERT INTO contacts (lead_id, email, locale, time_zone)
               SELECT lead_id, '', locale, time_zone FROM parked
               WHERE NOT EXISTS (SELECT 1 FROM erased_leads e WHERE e.lead_id = parked.lead_id)
                 AND NOT EXISTS (SELECT 1 FROM pending_contacts p
                                 WHERE p.lead_id = parked.lead_id AND p.id <> $1
                                   AND p.next_try_at < 'infinity')
               ON CONFLICT (lead_id) DO NOTHING
               RETURNING lead_id)
           SELECT pg_notify($3, '') FROM stored""",
        pending_id,
        error[:1000],
        wake,
    )


async def next_pending_in_seconds(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next waiting row may be tried (negative: overdue); None if none."""
    wait = await conn.fetchval(
        """SELECT extract(epoch FROM min(next_try_at) - now()) FROM pending_contacts pc
           WHERE next_try_at < 'infinity' AND NOT EXISTS (
               SELECT 1 FROM pending_contacts p
               WHERE p.lead_id = pc.lead_id AND p.id < pc.id AND p.next_try_at < 'infinity')"""
    )
    return None if wait is None else float(wait)
