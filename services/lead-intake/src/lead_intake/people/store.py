"""A person read whole in one query; found through the search index; corrected."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

from lead_intake.people.models import (
    MAX_SUBMISSIONS_SHOWN,
    Contact,
    PersonFound,
    PersonOut,
    Search,
    SubmissionOut,
    SubmissionsOut,
    consent_state,
    touchpoint,
)

# The lead, its submissions (count, latest 50), its latest qualification answers and what
# brought its consent: one round trip.
_PERSON = f"""
SELECT l.id, l.email, l.phone, l.first_name, l.last_name, l.custom_fields, l.consent,
       l.consent_changes, l.locale, l.time_zone, l.first_touch, l.last_touch, l.source,
       l.created_at, l.updated_at, l.is_test, l.merged_into, l.erased_at,
       (SELECT count(*) FROM submissions s WHERE s.lead_id = l.id) AS submission_count,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'submission_id', s.id, 'form_id', s.form_id, 'source', s.source,
                   'submitted_at', s.captured_at) ORDER BY s.captured_at DESC, s.id), '[]')
          FROM (SELECT id, form_id, source, captured_at FROM submissions
                WHERE lead_id = l.id ORDER BY captured_at DESC, id
                LIMIT {MAX_SUBMISSIONS_SHOWN}) AS s) AS latest_submissions,
       (SELECT coalesce(jsonb_object_agg(q.key, q.value ORDER BY s.captured_at, s.id), '{{}}')
          FROM submissions s, jsonb_each_text(s.qualification) AS q
          WHERE s.lead_id = l.id) AS qualification,
       (SELECT s.source || ':' || s.form_id FROM submissions s
          WHERE s.lead_id = l.id AND s.consent IS NOT NULL
          ORDER BY s.captured_at DESC, s.id LIMIT 1) AS consent_source
FROM leads l WHERE l.id = $1"""  # noqa: S608 (a constant, no input)


_BEFORE_ALL = UUID(int=0)
# The person's columns shown as they are stored, under their own names.
_AS_STORED = (
    "email", "phone", "first_name", "last_name", "locale", "time_zone", "source", "created_at",
    "updated_at",
)  # fmt: skip


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def person(conn: asyncpg.Connection, lead_id: UUID) -> PersonOut | bool | None:
    """The person; False when erased; None when there is no such lead."""
    row = await conn.fetchrow(_PERSON, lead_id)
    if row is None:
        return None
    if row["erased_at"] is not None:
        return False
    return PersonOut(
        lead_id=row["id"],
        **{c: row[c] for c in _AS_STORED},
        custom_fields=_json(row["custom_fields"]) or {},
        consent=consent_state(
            _json(row["consent"]), row["consent_source"], _json(row["consent_changes"]) or {}
        ),
        first_touch=touchpoint(_json(row["first_touch"])),
        last_touch=touchpoint(_json(row["last_touch"])),
        qualification=_json(row["qualification"]) or {},
        submissions=SubmissionsOut(
            count=row["submission_count"],
            items=[SubmissionOut.model_validate(s) for s in _json(row["latest_submissions"])],
        ),
        test=row["is_test"],
        merged_into=row["merged_into"],
    )


async def find(conn: asyncpg.Connection, search: Search) -> list[PersonFound]:
    """Up to `limit + 1` people having every digest, in lead id order after `after`."""
    first, *others = search.digests
    rows = await conn.fetch(
        # The first word's entries are a range of the primary key, in lead id order: read
        # until the page is full, each candidate checked for the other words by a key probe.
        # Nothing aggregates every match, so a 2-letter prefix costs what a rare one does.
        """SELECT l.id AS lead_id, l.created_at, l.updated_at,
                  l.email, l.phone, l.first_name, l.last_name
           FROM (SELECT t.lead_id FROM lead_search_terms t
                 WHERE t.digest = $1 AND t.lead_id > $3
                   AND NOT EXISTS (
                       SELECT 1 FROM unnest($2::bytea[]) AS other(digest)
                       WHERE NOT EXISTS (
                           SELECT 1 FROM lead_search_terms o
                           WHERE o.digest = other.digest AND o.lead_id = t.lead_id))
                 ORDER BY t.lead_id LIMIT $4) AS t
           JOIN leads l ON l.id = t.lead_id AND l.erased_at IS NULL
           ORDER BY l.id""",
        first,
        others,
        search.after or _BEFORE_ALL,
        search.limit + 1,
    )
    return [PersonFound.model_validate(dict(r)) for r in rows]  # the columns are its fields


async def by_ids(conn: asyncpg.Connection, search: Search) -> list[PersonFound]:
    """Up to `limit + 1` of the people with `search.ids` (not erased), in lead id order after
    `after`: the names of a page of leads another service listed."""
    assert search.ids is not None
    rows = await conn.fetch(
        """SELECT id AS lead_id, created_at, updated_at, email, phone, first_name, last_name
           FROM leads
           WHERE id = ANY($1::uuid[]) AND id > $2 AND erased_at IS NULL
           ORDER BY id LIMIT $3""",
        search.ids,
        search.after or _BEFORE_ALL,
        search.limit + 1,
    )
    return [PersonFound.model_validate(dict(r)) for r in rows]  # the columns are its fields


async def lock_contact(conn: asyncpg.Connection, lead_id: UUID) -> Contact | bool | None:
    """The lead's details, its row locked for this transaction; False erased, None unknown."""
    row = await conn.fetchrow(
        """SELECT email, phone, first_name, last_name, locale, time_zone, custom_fields,
                  erased_at FROM leads WHERE id = $1 FOR UPDATE""",
        lead_id,
    )
    if row is None:
        return None
    if row["erased_at"] is not None:
        return False
    return Contact(
        row["email"],
        row["phone"],
        row["first_name"],
        row["last_name"],
        row["locale"],
        row["time_zone"],
        _json(row["custom_fields"]) or {},
    )


async def email_taken(conn: asyncpg.Connection, email: str, lead_id: UUID) -> bool:
    """Another lead has this email."""
    found = await conn.fetchval(
        "SELECT true FROM leads WHERE email = $1 AND id <> $2 LIMIT 1", email, lead_id
    )
    return bool(found)


async def phone_taken(conn: asyncpg.Connection, phone: str, lead_id: UUID) -> bool:
    """Another lead (not erased) has this phone."""
    found = await conn.fetchval(
        "SELECT true FROM leads WHERE phone = $1 AND id <> $2 AND erased_at IS NULL LIMIT 1",
        phone,
        lead_id,
    )
    return bool(found)


async def correct(
    conn: asyncpg.Connection, lead_id: UUID, contact: Contact, consent: dict[str, Any]
) -> None:
    """Write the corrected details and the consent changes (merged per category)."""
    await conn.execute(
        """UPDATE leads SET email = $2, phone = $3, first_name = $4, last_name = $5,
               locale = $6, time_zone = $7, consent_changes = consent_changes || $8::jsonb,
               updated_at = now()
           WHERE id = $1""",
        lead_id,
        contact.email,
        contact.phone,
        contact.first_name,
        contact.last_name,
        contact.locale,
        contact.time_zone,
        consent,
    )


async def people_to_index(
    conn: asyncpg.Connection, after: UUID | None, limit: int
) -> list[tuple[UUID, str | None, str | None, str | None, str | None]]:
    """A batch of people (not erased) in id order, for indexing everyone again; their rows
    locked for the caller's transaction, so no capture changes them meanwhile."""
    rows = await conn.fetch(
        # `id > coalesce(...)`: the page starts at its key in the primary key's index with
        # the one plan the connection keeps (decision 0083); `$1 IS NULL OR id > $1` would
        # read the index from its start on every page.
        """SELECT id, email, phone, first_name, last_name FROM leads
           WHERE erased_at IS NULL
             AND id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000')
           ORDER BY id LIMIT $2 FOR UPDATE""",
        after,
        limit,
    )
    return [(r["id"], r["email"], r["phone"], r["first_name"], r["last_name"]) for r in rows]
