"""Leads (one per person), their submissions, visitors and data keys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from funnel_contracts.sealed import new_data_key
from funnel_servicekit.outbox import OutboxRecord, OutboxWith
from lead_intake.leads.models import Lead, Submission, SubmissionOrigin, Touchpoint

_RETURNING = "RETURNING id, email, phone, first_name, last_name, captured_at"


def _lead(row: Any, created: bool) -> Lead:
    return Lead(
        row["id"],
        row["email"],
        row["phone"],
        row["first_name"],
        row["last_name"],
        row["captured_at"],
        created,
        row.get("submission_id") if created else None,
        row.get("data_key") if created else None,
    )


# `{test}`: the parameter holding whether it is a test lead (its number differs below).
_INSERT_LEAD_WITH = """INSERT INTO leads (id, email, phone, first_name, last_name, source,
        captured_at, first_touch, last_touch, consent, custom_fields, locale, time_zone, is_test)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, {test})
    ON CONFLICT (email) DO NOTHING"""
_INSERT_LEAD = _INSERT_LEAD_WITH.format(test="$13")
# A new person's lead, first submission and data key in one statement (one round trip, atomic
# by itself): the others are written only when the lead was, so a known email writes none.
_INSERT_TEST_AT_24 = _INSERT_LEAD_WITH.format(test="$24")
_INSERT_LEAD_AND_SUBMISSION = f"""WITH lead AS ({_INSERT_TEST_AT_24} {_RETURNING}),
    submission AS (
        INSERT INTO submissions (id, lead_id, form_id, utm, landing_page, referrer, user_agent,
            source, visitor_id, ip_truncated, consent, custom_fields, qualification, captured_at)
        SELECT $13::uuid, lead.id, $14::text, $15::jsonb, $16::text, $17::text, $18::text, $6,
               $19::text, $20::text, $9, $10, $21::jsonb, $7
        FROM lead
        RETURNING id),
    data_key AS (
        INSERT INTO subject_keys (lead_id, data_key) SELECT lead.id, $22::bytea FROM lead
        RETURNING data_key),
    search_terms AS (
        INSERT INTO lead_search_terms (digest, lead_id)
        SELECT digest, lead.id FROM lead, unnest($23::bytea[]) AS digest)
    SELECT lead.*, submission.id AS submission_id, data_key.data_key
    FROM lead, submission, data_key"""  # noqa: S608


async def create_lead(
    conn: asyncpg.Connection,
    sub: Submission,
    *,
    source: str,
    captured_at: datetime,
    submission: SubmissionOrigin | None = None,
    terms: list[bytes] | None = None,
) -> Lead | None:
    """A new lead for this email; None when the person is known already.

    With `submission`, the new lead's submission, data key and search index entries (`terms`)
    are written by the same statement and its id is `Lead.submission_id`; without, index the
    lead apart (`index_person`).
    """
    if submission is None:
        args = _lead_args(uuid4(), sub, source, captured_at)
        row = await conn.fetchrow(f"{_INSERT_LEAD} {_RETURNING}", *args, sub.test)
        return _lead(row, True) if row else None
    made = NewLead(uuid4(), uuid4(), new_data_key(), sub, captured_at, terms or [])
    row = await conn.fetchrow(
        _INSERT_LEAD_AND_SUBMISSION, *_lead_and_submission_args(made, source, submission)
    )
    return _lead(row, True) if row else None


def _lead_args(lead_id: UUID, sub: Submission, source: str, captured_at: datetime) -> list[Any]:
    return [
        lead_id,
        sub.email,
        sub.phone,
        sub.first_name,
        sub.last_name,
        source,
        captured_at,
        sub.touchpoint.as_json(),
        sub.consent.model_dump(mode="json") if sub.consent else None,
        sub.custom_fields,
        sub.locale,
        sub.time_zone,
    ]


def _lead_and_submission_args(
    made: NewLead, source: str, submission: SubmissionOrigin
) -> list[Any]:
    """$1..$24 of `_INSERT_LEAD_AND_SUBMISSION`."""
    sub = made.sub
    return [
        *_lead_args(made.id, sub, source, made.captured_at),
        made.submission_id,
        submission.form_id,
        sub.touchpoint.utm.model_dump(exclude_none=True),
        sub.touchpoint.landing_page,
        sub.touchpoint.referrer,
        _user_agent(submission.user_agent),
        sub.visitor_id,
        submission.ip_truncated,
        sub.qualification,
        made.data_key,
        made.terms,
        sub.test,
    ]


@dataclass(frozen=True)
class ReadyLead:
    """A new person by email made ready before their transaction (no database read): ids,
    key and index entries (`made`), where the post came from, and their
    funnel.lead.captured.v2 encoded for the outbox. Written only if the email is new."""

    made: NewLead
    submission: SubmissionOrigin
    source: str
    event: OutboxRecord
    email_sha256: str  # what activities waiting for the email are kept under


# A new person by email with everything their capture writes, in one statement: the lead,
# its submission, key and index entries, funnel.lead.captured.v2 in the outbox, and the
# activities that waited for the email claimed (their ids; `claim_pending_activities` takes
# the email's lock, as the activity path does). Nothing of it when the email is known.
_PERSON_EVENT = OutboxWith(first=25, when="lead")
_INSERT_PERSON = _INSERT_LEAD_AND_SUBMISSION.replace(
    "\n    SELECT lead.*,",
    f""",
    {_PERSON_EVENT.sql},
    waiting AS (
        SELECT w.id FROM lead, claim_pending_activities(lead.id, NULL, $31::text) AS w)
    SELECT lead.*, {_PERSON_EVENT.written} AS events,
           ARRAY(SELECT id FROM waiting) AS waiting,""",  # noqa: S608 (fixed text)
)


async def create_person(
    conn: asyncpg.Connection, ready: ReadyLead, *, outbox_schema: str
) -> tuple[Lead, list[UUID]] | None:
    """`create_lead` with its submission, and also its event written to the outbox and the
    activities that waited for its email claimed: the new lead and those activities' ids;
    None, writing nothing, when the email is known already."""
    row = await conn.fetchrow(
        _INSERT_PERSON,
        *_lead_and_submission_args(ready.made, ready.source, ready.submission),
        *OutboxWith.args(ready.event, outbox_schema),
        ready.email_sha256,
    )
    if row is None:
        return None
    if row["events"] != 1:
        raise RuntimeError("a new person's event was not written with them")
    return _lead(row, True), list(row["waiting"])


# `create_person` for many people in one statement (a group of form posts): each row of
# `input` one person, in the order given; a person whose email is known by then (or given
# twice in the batch) writes nothing. Activities waiting for an email are claimed in the
# order of the emails' hashes (the order the activity path locks them in).
_INSERT_PEOPLE = """WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
            $18::text[], $19::bytea[], $20::text[], $21::bool[], $22::text[], $23::text[],
            $24::text[], $25::bytea[], $26::bytea[], $27::text[], $28::text[], $29::int[],
            $30::int[])
        WITH ORDINALITY AS t(id, submission_id, email, phone, first_name, last_name,
            captured_at, touch, consent, custom_fields, locale, time_zone, utm, landing_page,
            referrer, user_agent, ip_truncated, qualification, data_key, form_id, is_test,
            email_sha256, source, topic, event_key, event_value, event_headers, event_type,
            first, count, n)),
    lead AS (
        INSERT INTO leads (id, email, phone, first_name, last_name, source, captured_at,
            first_touch, last_touch, consent, custom_fields, locale, time_zone, is_test)
        SELECT id, email, phone, first_name, last_name, source, captured_at, touch::jsonb,
               touch::jsonb, consent::jsonb, custom_fields::jsonb, locale, time_zone, is_test
        FROM input ORDER BY n
        ON CONFLICT (email) DO NOTHING
        RETURNING id),
    submission AS (
        INSERT INTO submissions (id, lead_id, form_id, utm, landing_page, referrer, user_agent,
            source, ip_truncated, consent, custom_fields, qualification, captured_at)
        SELECT i.submission_id, i.id, i.form_id, i.utm::jsonb, i.landing_page, i.referrer,
               i.user_agent, i.source, i.ip_truncated, i.consent::jsonb,
               i.custom_fields::jsonb, i.qualification::jsonb, i.captured_at
        FROM input i JOIN lead USING (id)),
    data_key AS (
        INSERT INTO subject_keys (lead_id, data_key)
        SELECT i.id, i.data_key FROM input i JOIN lead USING (id)),
    terms AS (
        SELECT i.id, substring($31::bytea FROM (i.first + g) * 16 + 1 FOR 16) AS digest
        FROM input i, generate_series(0, i.count - 1) AS g),
    search_terms AS (
        INSERT INTO lead_search_terms (digest, lead_id)
        SELECT t.digest, t.id FROM terms t JOIN lead USING (id) ORDER BY t.digest),
    events AS (
        INSERT INTO outbox (topic, key, value, headers, event_type)
        SELECT i.topic, i.event_key, i.event_value, i.event_headers::jsonb, i.event_type
        FROM input i JOIN lead USING (id) ORDER BY i.n
        RETURNING 1),
    woken AS (SELECT pg_notify($32::text, '') FROM (SELECT 1 FROM events LIMIT 1) AS one),
    waiting AS (
        SELECT l.id AS lead_id, w.id
        FROM (SELECT i.id, i.email_sha256 FROM input i JOIN lead USING (id)
              ORDER BY i.email_sha256) AS l,
             LATERAL claim_pending_activities(l.id, NULL, l.email_sha256) AS w)
    SELECT l.id, (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM woken) AS woken,
           ARRAY(SELECT w.id FROM waiting w WHERE w.lead_id = l.id) AS waiting
    FROM lead l"""


async def create_people(
    conn: asyncpg.Connection, people: list[ReadyLead], *, outbox_schema: str
) -> dict[UUID, list[UUID]]:
    """`create_person` for each of `people` in one statement: the new leads written, each
    with the ids of the activities that waited for its email (an email known by then, or
    given twice, writes nothing and is absent)."""
    if not people:
        return {}
    columns: list[list[Any]] = [[] for _ in range(30)]
    digests: list[bytes] = []
    entries = 0  # index entries of the people before this one
    for ready in people:
        made, sub, origin = ready.made, ready.made.sub, ready.submission
        touch, event = sub.touchpoint, ready.event
        terms = b"".join(made.terms)
        if len(terms) != _DIGEST_BYTES * len(made.terms):
            raise ValueError(f"search index entries are {_DIGEST_BYTES} bytes each")
        values = (
            *_person_values(made),
            touch.referrer,
            _user_agent(origin.user_agent),
            origin.ip_truncated,
            _js(sub.qualification),
            made.data_key,
            origin.form_id,
            sub.test,
            ready.email_sha256,
            ready.source,
            *OutboxWith.args(event, outbox_schema)[:5],
            entries,
            len(made.terms),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        digests.append(terms)
        entries += len(made.terms)
    found = await conn.fetch(
        _INSERT_PEOPLE, *columns, b"".join(digests), OutboxWith.channel(outbox_schema)
    )
    if any(r["events"] != len(found) for r in found):
        raise RuntimeError("the new people's events were not written with them")
    return {r["id"]: list(r["waiting"]) for r in found}


@dataclass(frozen=True)
class NewLead:
    """A new person as a batch of them is written: ids, key and index entries made by the
    caller (the events it seals need them before the write)."""

    id: UUID
    submission_id: UUID
    data_key: bytes
    sub: Submission
    captured_at: datetime
    terms: list[bytes]


# A search index entry's length (the table checks it too).
_DIGEST_BYTES = 16
_INSERT_MANY = """WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::text[], $13::text[], $14::text[], $15::text[], $16::bytea[])
        AS t(id, submission_id, email, phone, first_name, last_name, captured_at, touch,
             consent, custom_fields, locale, time_zone, utm, landing_page, qualification,
             data_key)),
    lead AS (
        INSERT INTO leads (id, email, phone, first_name, last_name, source, captured_at,
            first_touch, last_touch, consent, custom_fields, locale, time_zone)
        SELECT id, email, phone, first_name, last_name, $17, captured_at, touch::jsonb,
               touch::jsonb, consent::jsonb, custom_fields::jsonb, locale, time_zone
        FROM input
        ON CONFLICT (email) DO NOTHING
        RETURNING id),
    submission AS (
        INSERT INTO submissions (id, lead_id, form_id, utm, landing_page, source, consent,
            custom_fields, qualification, captured_at)
        SELECT i.submission_id, i.id, $18, i.utm::jsonb, i.landing_page, $17, i.consent::jsonb,
               i.custom_fields::jsonb, i.qualification::jsonb, i.captured_at
        FROM input i JOIN lead USING (id)),
    data_key AS (
        INSERT INTO subject_keys (lead_id, data_key)
        SELECT i.id, i.data_key FROM input i JOIN lead USING (id)),
    -- The entries of all as one string of 16-byte digests ($19), each lead's from its
    -- first ($20, counted in entries) for its count ($21): one value to send, not thousands.
    terms AS (
        SELECT x.id, substring($19::bytea FROM (x.first + g) * 16 + 1 FOR 16) AS digest
        FROM unnest($1::uuid[], $20::int[], $21::int[]) AS x(id, first, count),
             generate_series(0, x.count - 1) AS g),
    search_terms AS (
        -- New leads' entries cannot conflict (a person's are distinct): no ON CONFLICT, and
        -- in digest order, the index's, so neighbouring entries land on the same pages.
        INSERT INTO lead_search_terms (digest, lead_id)
        SELECT t.digest, t.id FROM terms t JOIN lead USING (id)
        ORDER BY t.digest)
    SELECT id FROM lead"""


def new_lead_row(new: NewLead) -> tuple[Any, ...]:
    """One new person's values for `create_leads`, encoded (pure: made ahead of the statement,
    while an earlier batch's statements run)."""
    sub = new.sub
    digests = b"".join(new.terms)
    if len(digests) != _DIGEST_BYTES * len(new.terms):
        raise ValueError(f"search index entries are {_DIGEST_BYTES} bytes each")
    return (
        *_person_values(new),
        _js(sub.qualification),
        new.data_key,
        digests,
        len(new.terms),
    )


def _person_values(new: NewLead) -> tuple[Any, ...]:
    """A new person's lead and submission values as a batch statement takes them (JSON as
    text), from the ids to the landing page: what imports and form batches share."""
    sub, touch = new.sub, new.sub.touchpoint
    return (
        new.id,
        new.submission_id,
        sub.email,
        sub.phone,
        sub.first_name,
        sub.last_name,
        new.captured_at,
        _js(touch.as_json()),
        _js(sub.consent.model_dump(mode="json")) if sub.consent else None,
        _js(sub.custom_fields),
        sub.locale,
        sub.time_zone,
        _js(touch.utm.model_dump(exclude_none=True)),
        touch.landing_page,
    )


def _js(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def create_leads(
    conn: asyncpg.Connection, rows: list[tuple[Any, ...]], *, source: str, form_id: str
) -> set[UUID]:
    """New people by email (each `new_lead_row`), each with their first submission, data key
    and search index entries, in one statement; returns the ids written (an email known by
    then is not)."""
    if not rows:
        return set()
    columns = list(zip(*rows, strict=True))
    firsts, at = [], 0
    for count in columns[17]:
        firsts.append(at)
        at += count
    found = await conn.fetch(
        _INSERT_MANY,
        *columns[:16],
        source,
        form_id,
        b"".join(columns[16]),
        firsts,
        list(columns[17]),
    )
    return {r["id"] for r in found}


def _user_agent(value: str | None) -> str | None:
    return (value or "")[:512] or None


async def update_known_lead(conn: asyncpg.Connection, sub: Submission) -> Lead | None:
    """Apply a returning person's submission: latest details, last touchpoint; first one kept.

    Found by email, else (no email given) by phone; None when neither matches a lead.
    """
    # A lead merged into another is found as the one it was merged into.
    if sub.email is not None:
        where = "id = (SELECT coalesce(merged_into, id) FROM leads WHERE email = $1)"
        key = sub.email
    elif sub.phone is not None:
        where = "id = (SELECT coalesce(merged_into, id) FROM leads WHERE phone = $1 "
        where += "AND erased_at IS NULL ORDER BY created_at LIMIT 1)"
        key = sub.phone
    else:
        return None
    row = await conn.fetchrow(
        f"""UPDATE leads SET first_name = COALESCE($2, first_name),
                last_name = COALESCE($3, last_name), phone = COALESCE($4, phone),
                last_touch = $5, consent = COALESCE($6, consent),
                custom_fields = custom_fields || $7, locale = COALESCE($8, locale),
                time_zone = COALESCE($9, time_zone), updated_at = now()
            WHERE {where} {_RETURNING}""",  # noqa: S608 (fixed text, values bound)
        key,
        sub.first_name,
        sub.last_name,
        sub.phone,
        sub.touchpoint.as_json(),
        sub.consent.model_dump(mode="json") if sub.consent else None,
        sub.custom_fields,
        sub.locale,
        sub.time_zone,
    )
    return _lead(row, False) if row else None


async def insert_submission(
    conn: asyncpg.Connection,
    lead_id: UUID,
    form_id: str,
    sub: Submission,
    *,
    source: str,
    user_agent: str | None,
    ip_truncated: str | None,
    captured_at: datetime,
) -> UUID:
    submission_id = uuid4()
    await conn.execute(
        """INSERT INTO submissions (id, lead_id, form_id, utm, landing_page, referrer,
               user_agent, source, visitor_id, ip_truncated, consent, custom_fields,
               qualification, captured_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
        submission_id,
        lead_id,
        form_id,
        sub.touchpoint.utm.model_dump(exclude_none=True),
        sub.touchpoint.landing_page,
        sub.touchpoint.referrer,
        _user_agent(user_agent),
        source,
        sub.visitor_id,
        ip_truncated,
        sub.consent.model_dump(mode="json") if sub.consent else None,
        sub.custom_fields,
        sub.qualification,
        captured_at,
    )
    return submission_id


async def lead_ids_by_email(conn: asyncpg.Connection, email: str) -> list[UUID]:
    rows = await conn.fetch(
        "SELECT coalesce(merged_into, id) AS id FROM leads WHERE email = $1 FOR UPDATE", email
    )
    return [r["id"] for r in rows]


async def ids_by_email(conn: asyncpg.Connection, emails: list[str]) -> dict[str, UUID]:
    """The leads of those of these emails that are known."""
    rows = await conn.fetch(
        "SELECT email, coalesce(merged_into, id) AS id FROM leads WHERE email = ANY($1::text[])",
        emails,
    )
    return {r["email"]: r["id"] for r in rows}


async def lead_ids_by_phone(conn: asyncpg.Connection, phone: str) -> list[UUID]:
    """The person known by this phone (the oldest lead with it), locked."""
    rows = await conn.fetch(
        """SELECT coalesce(merged_into, id) AS id FROM leads WHERE phone = $1
               AND erased_at IS NULL ORDER BY created_at LIMIT 1 FOR UPDATE""",
        phone,
    )
    return [r["id"] for r in rows]


async def fill_lead(
    conn: asyncpg.Connection, lead_id: UUID, sub: Submission
) -> tuple[Lead, Submission] | None:
    """Fill the lead's empty fields from `sub`, take its consent when newer; None when that
    changes nothing. Returns the lead as it now is and its details as the update event's."""
    consent = sub.consent.model_dump(mode="json") if sub.consent else None
    row = await conn.fetchrow(
        """WITH prev AS (SELECT * FROM leads WHERE id = $1 AND erased_at IS NULL FOR UPDATE),
           merged AS (
               SELECT COALESCE(prev.first_name, $2) AS first_name,
                      COALESCE(prev.last_name, $3) AS last_name,
                      COALESCE(prev.phone, $4) AS phone,
                      COALESCE(prev.locale, $5) AS locale,
                      COALESCE(prev.time_zone, $6) AS time_zone,
                      $7::jsonb || prev.custom_fields AS custom_fields,
                      $8::jsonb IS NOT NULL AND (prev.consent IS NULL
                          OR (prev.consent->>'given_at')::timestamptz
                             < ($8::jsonb->>'given_at')::timestamptz) AS newer_consent
               FROM prev)
           UPDATE leads SET first_name = merged.first_name, last_name = merged.last_name,
               phone = merged.phone, locale = merged.locale, time_zone = merged.time_zone,
               custom_fields = merged.custom_fields,
               consent = CASE WHEN merged.newer_consent THEN $8::jsonb ELSE leads.consent END,
               updated_at = now()
           FROM prev, merged
           WHERE leads.id = prev.id AND (
               merged.newer_consent OR merged.custom_fields <> prev.custom_fields
               OR (merged.first_name, merged.last_name, merged.phone, merged.locale,
                   merged.time_zone) IS DISTINCT FROM
                  (prev.first_name, prev.last_name, prev.phone, prev.locale, prev.time_zone))
           RETURNING leads.id, leads.email, leads.phone, leads.first_name, leads.last_name,
               leads.captured_at, leads.locale, leads.time_zone, leads.custom_fields,
               merged.newer_consent""",
        lead_id,
        sub.first_name,
        sub.last_name,
        sub.phone,
        sub.locale,
        sub.time_zone,
        sub.custom_fields,
        consent,
    )
    if row is None:
        return None
    details = Submission(
        email=row["email"],
        phone=row["phone"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        touchpoint=sub.touchpoint,
        consent=sub.consent if row["newer_consent"] else None,
        locale=row["locale"],
        time_zone=row["time_zone"],
        custom_fields=dict(row["custom_fields"]),
        qualification=sub.qualification,
    )
    return _lead(row, False), details


async def set_first_touch(conn: asyncpg.Connection, lead_id: UUID, first: Touchpoint) -> None:
    await conn.execute("UPDATE leads SET first_touch = $2 WHERE id = $1", lead_id, first.as_json())


async def lock_phone(conn: asyncpg.Connection, phone: str) -> None:
    """Identity by phone alone: two first posts with one number queue here (this transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"phone:{phone}")


async def key_for(conn: asyncpg.Connection, lead_id: UUID) -> bytes:
    """The lead's data key, made now if it has none (leads captured before keys existed).

    Inside the caller's transaction, so a key is never used by an event that is not committed.
    """
    # One round trip, no row rewritten when the key exists. Two submissions of one person
    # are serialized earlier on the lead's row, so the plain read sees a key made by another.
    key: bytes | None = await conn.fetchval(
        """WITH made AS (
               INSERT INTO subject_keys (lead_id, data_key) VALUES ($1, $2)
               ON CONFLICT (lead_id) DO NOTHING RETURNING data_key)
           SELECT data_key FROM made
           UNION ALL SELECT data_key FROM subject_keys WHERE lead_id = $1
           LIMIT 1""",
        lead_id,
        new_data_key(),
    )
    if key is None:
        raise LookupError(f"no data key for lead {lead_id}")
    return key


async def index_person(conn: asyncpg.Connection, lead_id: UUID, terms: list[bytes]) -> None:
    """The lead's search index entries are `terms` from now on (the others deleted).

    Callers hold the lead's row (an update, or FOR UPDATE), so two never interleave.
    """
    await conn.execute(
        """WITH gone AS (
               DELETE FROM lead_search_terms
               WHERE lead_id = $1 AND NOT (digest = ANY($2::bytea[])))
           INSERT INTO lead_search_terms (digest, lead_id)
           SELECT digest, $1 FROM unnest($2::bytea[]) AS digest
           ON CONFLICT DO NOTHING""",
        lead_id,
        terms,
    )


# --- merges ------------------------------------------------------------------------------

_PAIR = """SELECT id, email, phone, first_name, last_name, captured_at, created_at, erased_at,
       merged_into, locale, time_zone, consent, custom_fields, is_test
    FROM leads WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"""


async def lock_leads(conn: asyncpg.Connection, lead_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """These leads as they are, locked (in id order, as every writer of two leads)."""
    return {r["id"]: dict(r) for r in await conn.fetch(_PAIR, lead_ids)}


async def phone_only_leads(conn: asyncpg.Connection, phone: str, but: UUID) -> list[UUID]:
    """Leads known by this phone alone (no email), other than `but`, not merged or erased."""
    rows = await conn.fetch(
        """SELECT id FROM leads WHERE phone = $1 AND email IS NULL AND id <> $2
               AND merged_into IS NULL AND erased_at IS NULL ORDER BY created_at""",
        phone,
        but,
    )
    return [r["id"] for r in rows]


async def fold(
    conn: asyncpg.Connection, survivor: UUID, other: UUID, merged: dict[str, Any]
) -> Lead:
    """`other` folded into `survivor`: its submissions, activities, visitors and platform
    deliveries move; the survivor takes `merged` (its fields after the merge); the other is
    marked merged into it and found no more by search. Returns the survivor as it now is."""
    for table in ("submissions", "activities", "visitors", "platform_leads_seen"):
        await conn.execute(
            f"UPDATE {table} SET lead_id = $1 WHERE lead_id = $2",  # noqa: S608 (fixed names)
            survivor,
            other,
        )
    await conn.execute("DELETE FROM lead_search_terms WHERE lead_id = $1", other)
    # The email moves only when the survivor has none (emails are unique).
    await conn.execute(
        """UPDATE leads SET merged_into = $2, updated_at = now(),
               email = CASE WHEN $3 THEN NULL ELSE email END
           WHERE id = $1""",
        other,
        survivor,
        merged.pop("takes_email"),
    )
    row = await conn.fetchrow(
        f"""UPDATE leads SET email = $2, phone = $3, first_name = $4, last_name = $5,
               locale = $6, time_zone = $7, consent = $8, custom_fields = $9,
               is_test = $10, updated_at = now()
           WHERE id = $1 {_RETURNING}""",  # noqa: S608 (fixed text)
        survivor,
        merged["email"],
        merged["phone"],
        merged["first_name"],
        merged["last_name"],
        merged["locale"],
        merged["time_zone"],
        merged["consent"],
        merged["custom_fields"],
        merged["is_test"],
    )
    return _lead(row, False)
