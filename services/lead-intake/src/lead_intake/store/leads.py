"""Leads (one per person) and their submissions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from funnel_contracts.sealed import new_data_key
from lead_intake.submission import Submission

_RETURNING = "RETURNING id, email, phone, first_name, last_name, captured_at"


@dataclass(frozen=True)
class Lead:
    """A lead's identity and contact details after this submission was applied."""

    id: UUID
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    captured_at: datetime
    created: bool
    # The submission written in the same statement as a new lead (None: write it apart).
    submission_id: UUID | None = None
    # The person's data key, made in that same statement (None: read or make it apart).
    data_key: bytes | None = None


@dataclass(frozen=True)
class SubmissionOrigin:
    """What a submission records beside the person and the capture's source and time."""

    form_id: str
    user_agent: str | None
    ip_truncated: str | None


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


_INSERT_LEAD = """INSERT INTO leads (id, email, phone, first_name, last_name, source, captured_at,
        first_touch, last_touch, consent, custom_fields, locale, time_zone)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12)
    ON CONFLICT (email) DO NOTHING"""
# A new person's lead, first submission and data key in one statement (one round trip, atomic
# by itself): the others are written only when the lead was, so a known email writes none.
_INSERT_LEAD_AND_SUBMISSION = f"""WITH lead AS ({_INSERT_LEAD} {_RETURNING}),
    submission AS (
        INSERT INTO submissions (id, lead_id, form_id, utm, landing_page, referrer, user_agent,
            source, visitor_id, ip_truncated, consent, custom_fields, qualification, captured_at)
        SELECT $13::uuid, lead.id, $14::text, $15::jsonb, $16::text, $17::text, $18::text, $6,
               $19::text, $20::text, $9, $10, $21::jsonb, $7
        FROM lead
        RETURNING id),
    data_key AS (
        INSERT INTO subject_keys (lead_id, data_key) SELECT lead.id, $22::bytea FROM lead
        RETURNING data_key)
    SELECT lead.*, submission.id AS submission_id, data_key.data_key
    FROM lead, submission, data_key"""  # noqa: S608


async def create_lead(
    conn: asyncpg.Connection,
    sub: Submission,
    *,
    source: str,
    captured_at: datetime,
    submission: SubmissionOrigin | None = None,
) -> Lead | None:
    """A new lead for this email; None when the person is known already.

    With `submission`, the new lead's submission is written by the same statement and its id
    is `Lead.submission_id`.
    """
    args: list[Any] = [
        uuid4(),
        sub.email,
        sub.phone,
        sub.first_name,
        sub.last_name,
        source,
        captured_at,
        sub.touch.as_json(),
        sub.consent.model_dump(mode="json") if sub.consent else None,
        sub.custom_fields,
        sub.locale,
        sub.time_zone,
    ]
    if submission is None:
        row = await conn.fetchrow(f"{_INSERT_LEAD} {_RETURNING}", *args)
        return _lead(row, True) if row else None
    row = await conn.fetchrow(
        _INSERT_LEAD_AND_SUBMISSION,
        *args,
        uuid4(),
        submission.form_id,
        sub.touch.utm.model_dump(exclude_none=True),
        sub.touch.landing_page,
        sub.touch.referrer,
        _user_agent(submission.user_agent),
        sub.visitor_id,
        submission.ip_truncated,
        sub.qualification,
        new_data_key(),
    )
    return _lead(row, True) if row else None


def _user_agent(value: str | None) -> str | None:
    return (value or "")[:512] or None


async def update_known_lead(conn: asyncpg.Connection, sub: Submission) -> Lead | None:
    """Apply a returning person's submission: latest details, last touch; first touch kept.

    Found by email, else (no email given) by phone; None when neither matches a lead.
    """
    if sub.email is not None:
        where, key = "email = $1", sub.email
    elif sub.phone is not None:
        where = "id = (SELECT id FROM leads WHERE phone = $1 AND erased_at IS NULL "
        where += "ORDER BY created_at LIMIT 1)"
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
        sub.touch.as_json(),
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
        sub.touch.utm.model_dump(exclude_none=True),
        sub.touch.landing_page,
        sub.touch.referrer,
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


async def link_visitor(conn: asyncpg.Connection, visitor_id: str, lead_id: UUID) -> None:
    """The visitor is this lead from now on (a visitor id already linked keeps its lead)."""
    await conn.execute(
        "INSERT INTO visitors (visitor_id, lead_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        visitor_id,
        lead_id,
    )


async def lead_ids_by_email(conn: asyncpg.Connection, email: str) -> list[UUID]:
    rows = await conn.fetch("SELECT id FROM leads WHERE email = $1 FOR UPDATE", email)
    return [r["id"] for r in rows]


async def lead_ids_by_phone_alone(conn: asyncpg.Connection, phone: str) -> list[UUID]:
    """Leads whose identity is this phone (no email): a lead with an email is that email's."""
    rows = await conn.fetch(
        "SELECT id FROM leads WHERE phone = $1 AND email IS NULL FOR UPDATE", phone
    )
    return [r["id"] for r in rows]


async def erase_leads(conn: asyncpg.Connection, lead_ids: list[UUID]) -> None:
    """Remove every piece of personal data of these leads; ids and counts stay."""
    await conn.execute(
        """UPDATE leads SET email = NULL, phone = NULL, first_name = NULL, last_name = NULL,
               consent = NULL, custom_fields = '{}', first_touch = '{}', last_touch = '{}',
               locale = NULL, time_zone = NULL, erased_at = now(), updated_at = now()
           WHERE id = ANY($1::uuid[])""",
        lead_ids,
    )
    await conn.execute(
        """UPDATE submissions SET landing_page = NULL, referrer = NULL, user_agent = NULL,
               ip_truncated = NULL, custom_fields = '{}', qualification = '{}', consent = NULL,
               utm = '{}'
           WHERE lead_id = ANY($1::uuid[])""",
        lead_ids,
    )
    await conn.execute(
        """UPDATE activities SET details = '{}' WHERE lead_id = ANY($1::uuid[])""", lead_ids
    )
    await conn.execute("DELETE FROM visitors WHERE lead_id = ANY($1::uuid[])", lead_ids)


async def record_erasure(
    conn: asyncpg.Connection,
    request_id: UUID,
    email_sha256: str,
    lead_ids: list[UUID],
    requested_by: str,
) -> None:
    await conn.execute(
        """INSERT INTO erasure_requests (id, email_sha256, lead_ids, requested_by)
           VALUES ($1, $2, $3, $4)""",
        request_id,
        email_sha256,
        lead_ids,
        requested_by,
    )
