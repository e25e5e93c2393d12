"""Activities: stored once each; those of people not known yet kept until they are; visitors."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from funnel_contracts.sealed import new_data_key
from funnel_servicekit.db import wrote_a_row
from funnel_servicekit.outbox import OutboxRecord, OutboxWith
from lead_intake.activities.models import StoredActivity, email_sha256


def _activity(row: Any) -> StoredActivity:
    return StoredActivity(
        row["id"],
        row["lead_id"],
        row["visitor_id"],
        row["activity_type"],
        row["occurred_at"],
        row["recorded_at"],
        row["order_id"],
        row["details"],
        row["pending_email_sha256"],
    )


_INSERT_ACTIVITY = """
    INSERT INTO activities (id, lead_id, visitor_id, form_id, activity_type,
        occurred_at, recorded_at, order_id, details, emitted_at, pending_email_sha256)
    VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8, $9,
            CASE WHEN $2::uuid IS NULL THEN NULL ELSE $7::timestamptz END, $10)
    ON CONFLICT DO NOTHING RETURNING true
"""


async def insert_activity(
    conn: asyncpg.Connection, activity: StoredActivity, form_id: str | None
) -> bool:
    """False when it is stored already (same id) or is a purchase whose order counted."""
    return await wrote_a_row(conn, _INSERT_ACTIVITY, *_activity_args(activity, form_id))


# An activity and its event (made beforehand) in one statement: the event only if the
# activity was stored (not a duplicate).
_ACTIVITY_EVENT = OutboxWith(first=11, when="stored")
_INSERT_ACTIVITY_AND_EVENT = f"""WITH stored AS ({_INSERT_ACTIVITY}),
    {_ACTIVITY_EVENT.sql}
    SELECT (SELECT count(*) FROM stored) AS stored, {_ACTIVITY_EVENT.written} AS events"""  # noqa: S608


async def insert_activity_with_event(
    conn: asyncpg.Connection,
    activity: StoredActivity,
    form_id: str | None,
    event: OutboxRecord,
    outbox_schema: str,
) -> bool:
    """`insert_activity`, and its event written to the outbox in the same statement when it
    was stored; False (nothing written) when it is stored already or its order counted."""
    row = await conn.fetchrow(
        _INSERT_ACTIVITY_AND_EVENT,
        *_activity_args(activity, form_id),
        *OutboxWith.args(event, outbox_schema),
    )
    assert row is not None
    if row["stored"] != row["events"]:
        raise RuntimeError("an activity's event was not written with it")
    return bool(row["stored"])


# An activity of a lead named by id, with its event, in one statement that is its own
# transaction: nothing when the lead is unknown or erased (`known` 0) or the activity is
# stored already (`stored` 0). The lead's row is only read (its foreign key locks it KEY SHARE).
_BY_LEAD_EVENT = OutboxWith(first=11, when="stored")
_INSERT_FOR_KNOWN_LEAD = f"""WITH lead AS (
        SELECT id FROM leads WHERE id = $2::uuid AND erased_at IS NULL),
    stored AS (
        INSERT INTO activities (id, lead_id, visitor_id, form_id, activity_type,
            occurred_at, recorded_at, order_id, details, emitted_at, pending_email_sha256)
        SELECT $1::uuid, lead.id, $3::text, $4::text, $5::text, $6::timestamptz,
               $7::timestamptz, $8::text, $9::jsonb, $7::timestamptz, $10::text
        FROM lead
        ON CONFLICT DO NOTHING RETURNING true),
    {_BY_LEAD_EVENT.sql}
    SELECT (SELECT count(*) FROM lead) AS known, (SELECT count(*) FROM stored) AS stored,
           {_BY_LEAD_EVENT.written} AS events"""  # noqa: S608 (fixed text, values bound)


async def insert_for_known_lead(
    conn: asyncpg.Connection,
    activity: StoredActivity,
    form_id: str | None,
    event: OutboxRecord,
    outbox_schema: str,
) -> bool | None:
    """`insert_activity_with_event` for an activity whose lead is named by id, in one
    statement with no transaction around it: True stored (its event too), False stored
    already, None when the lead is unknown or erased (nothing written)."""
    row = await conn.fetchrow(
        _INSERT_FOR_KNOWN_LEAD,
        *_activity_args(activity, form_id),
        *OutboxWith.args(event, outbox_schema),
    )
    assert row is not None
    if row["stored"] != row["events"]:
        raise RuntimeError("an activity's event was not written with it")
    return None if not row["known"] else bool(row["stored"])


def _activity_args(activity: StoredActivity, form_id: str | None) -> list[Any]:
    return [
        activity.id,
        activity.lead_id,
        activity.visitor_id,
        form_id,
        activity.activity_type,
        activity.occurred_at,
        activity.recorded_at,
        activity.order_id,
        activity.details,
        activity.pending_email_sha256,
    ]


async def data_keys(conn: asyncpg.Connection, lead_ids: list[UUID]) -> dict[UUID, bytes]:
    """The data keys of these leads, made now for a lead that has none (captured before keys
    existed), in one round trip. Inside the caller's transaction, so a key is never used by an
    event that is not committed; an erased lead has no key and gets none."""
    rows = await conn.fetch(
        """WITH want AS (
               SELECT w.lead_id, w.data_key
               FROM unnest($1::uuid[], $2::bytea[]) AS w (lead_id, data_key)
               JOIN leads l ON l.id = w.lead_id AND l.erased_at IS NULL),
           made AS (
               INSERT INTO subject_keys (lead_id, data_key)
               SELECT lead_id, data_key FROM want
               ON CONFLICT (lead_id) DO NOTHING RETURNING lead_id, data_key)
           SELECT lead_id, data_key FROM made
           UNION ALL
           SELECT k.lead_id, k.data_key FROM subject_keys k JOIN want USING (lead_id)""",
        lead_ids,
        [new_data_key() for _ in lead_ids],
    )
    return {r["lead_id"]: r["data_key"] for r in rows}


async def lead_status(conn: asyncpg.Connection, lead_id: UUID) -> bool | None:
    """None for an unknown lead, True for an erased one, False otherwise."""
    erased: bool | None = await conn.fetchval(
        "SELECT erased_at IS NOT NULL FROM leads WHERE id = $1", lead_id
    )
    return erased


async def offline_touches(
    conn: asyncpg.Connection, lead_id: UUID, types: tuple[str, ...], limit: int
) -> list[StoredActivity]:
    """The lead's offline touches (and those of leads merged into it), newest first: the
    leads as one array, so that their activities are read from the lead index (an OR with
    a subquery would read the whole table; docs/decisions/0086)."""
    rows = await conn.fetch(
        """SELECT * FROM activities
           WHERE lead_id = ANY(ARRAY(SELECT id FROM leads WHERE merged_into = $1) || $1::uuid)
             AND activity_type = ANY($2::text[])
           ORDER BY occurred_at DESC, id LIMIT $3""",
        lead_id,
        list(types),
        limit,
    )
    return [_activity(r) for r in rows]


async def link_visitor(conn: asyncpg.Connection, visitor_id: str, lead_id: UUID) -> None:
    """The visitor is this lead from now on (a visitor id already linked keeps its lead)."""
    await conn.execute(
        "INSERT INTO visitors (visitor_id, lead_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        visitor_id,
        lead_id,
    )


async def leads_of_visitors(conn: asyncpg.Connection, visitor_ids: list[str]) -> dict[str, UUID]:
    rows = await conn.fetch(
        "SELECT visitor_id, lead_id FROM visitors WHERE visitor_id = ANY($1::text[])", visitor_ids
    )
    return {r["visitor_id"]: r["lead_id"] for r in rows}


async def leads_by_email(conn: asyncpg.Connection, emails: list[str]) -> dict[str, UUID]:
    rows = await conn.fetch("SELECT email, id FROM leads WHERE email = ANY($1::text[])", emails)
    return {r["email"]: r["id"] for r in rows}


async def leads_and_keys(
    conn: asyncpg.Connection, lead_ids: list[UUID]
) -> dict[UUID, bytes | None]:
    """Of these leads, those not erased, each with its data key (None: a lead captured
    before keys existed; `data_keys` makes it one)."""
    rows = await conn.fetch(
        """SELECT l.id, k.data_key FROM leads l LEFT JOIN subject_keys k ON k.lead_id = l.id
           WHERE l.id = ANY($1::uuid[]) AND l.erased_at IS NULL""",
        lead_ids,
    )
    return {r["id"]: r["data_key"] for r in rows}


async def lock_unknown_people(
    conn: asyncpg.Connection, email_sha256s: list[str], visitor_ids: list[str]
) -> None:
    """Hold off a lead claiming these people's activities until this transaction ends.

    The same keys as `claim_pending_activities` (migration 0004), taken in one global order
    (all emails, then all visitors, each sorted) so two batches cannot deadlock.
    """
    keys = [f"pending-email:{h}" for h in sorted(email_sha256s)]
    keys += [f"pending-visitor:{v}" for v in sorted(visitor_ids)]
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest($1::text[]) "
            "WITH ORDINALITY AS t(k, n) ORDER BY n",
            keys,
        )


async def lock_and_find_pending_emails(
    conn: asyncpg.Connection, email_sha256s: list[str]
) -> set[str]:
    """Of these emails (their hashes), the ones activities wait for; each email's key held
    until this transaction ends (the keys of claim_pending_activities, in one sorted order),
    so an activity naming one of them waits for this transaction's leads."""
    if not email_sha256s:
        return set()
    hashes = sorted(set(email_sha256s))
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('pending-email:' || h)) "
        "FROM unnest($1::text[]) WITH ORDINALITY AS t(h, n) ORDER BY n",
        hashes,
    )
    rows = await conn.fetch(
        """SELECT DISTINCT pending_email_sha256 AS h FROM activities
           WHERE lead_id IS NULL AND pending_email_sha256 = ANY($1::text[])""",
        hashes,
    )
    return {r["h"] for r in rows}


async def first_tagged_visit(
    conn: asyncpg.Connection, visitor_id: str
) -> tuple[dict[str, Any], str | None, datetime] | None:
    """The anonymous visitor's earliest activity that carried UTM tags: the tags, its page,
    when it happened; None when none did."""
    row = await conn.fetchrow(
        """SELECT details->'utm' AS utm, details->>'page_url' AS page_url, occurred_at
           FROM activities
           WHERE visitor_id = $1 AND lead_id IS NULL AND pending_email_sha256 IS NULL
             AND jsonb_typeof(details->'utm') = 'object' AND details->'utm' <> '{}'::jsonb
           ORDER BY occurred_at LIMIT 1""",
        visitor_id,
    )
    if row is None:
        return None
    utm = row["utm"]
    return (utm if isinstance(utm, dict) else {}), row["page_url"], row["occurred_at"]


async def claim_pending(
    conn: asyncpg.Connection, lead_id: UUID, *, visitor_id: str | None, email: str | None
) -> list[StoredActivity]:
    """What waited for this lead (by its email or its visitor id), in the order it happened."""
    if visitor_id is None and email is None:
        return []
    rows = await conn.fetch(
        """SELECT id, lead_id, visitor_id, activity_type, occurred_at, recorded_at, order_id,
                  details, pending_email_sha256
           FROM claim_pending_activities($1, $2, $3)""",
        lead_id,
        visitor_id,
        email_sha256(email) if email is not None else None,
    )
    return sorted((_activity(r) for r in rows), key=lambda a: (a.occurred_at, str(a.id)))


async def activities_by_id(conn: asyncpg.Connection, ids: list[UUID]) -> list[StoredActivity]:
    """These activities, in the order they happened (as `claim_pending` gives them)."""
    rows = await conn.fetch(
        """SELECT id, lead_id, visitor_id, activity_type, occurred_at, recorded_at, order_id,
                  details, pending_email_sha256
           FROM activities WHERE id = ANY($1::uuid[])""",
        ids,
    )
    return sorted((_activity(r) for r in rows), key=lambda a: (a.occurred_at, str(a.id)))


async def forget_pending_email(conn: asyncpg.Connection, email: str) -> int:
    """Erasure: drop what waits for this email (it names a person who asked to be forgotten)."""
    deleted = await conn.fetch(
        "DELETE FROM activities WHERE lead_id IS NULL AND pending_email_sha256 = $1 RETURNING 1",
        email_sha256(email),
    )
    return len(deleted)
