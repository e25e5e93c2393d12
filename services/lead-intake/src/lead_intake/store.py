"""lead-intake's tables: forms, leads (one per person), submissions."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg

from lead_intake.submission import SubmissionIn


@dataclass(frozen=True)
class Form:
    id: str
    funnel_id: str
    name: str


async def get_form(conn: asyncpg.Connection, form_id: str) -> Form | None:
    row = await conn.fetchrow("SELECT id, funnel_id, name FROM forms WHERE id = $1", form_id)
    return Form(row["id"], row["funnel_id"], row["name"]) if row else None


async def upsert_form(conn: asyncpg.Connection, form: Form) -> None:
    await conn.execute(
        """INSERT INTO forms (id, funnel_id, name) VALUES ($1, $2, $3)
           ON CONFLICT (id) DO UPDATE SET funnel_id = excluded.funnel_id,
               name = excluded.name, updated_at = now()""",
        form.id,
        form.funnel_id,
        form.name,
    )


async def find_or_create_lead(conn: asyncpg.Connection, sub: SubmissionIn) -> tuple[UUID, bool]:
    """The lead of this person (by normalized email); True when it was created now."""
    created = await conn.fetchval(
        """INSERT INTO leads (id, email, first_name, last_name, phone)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING id""",
        uuid4(),
        sub.email,
        sub.first_name,
        sub.last_name,
        sub.phone,
    )
    if created is not None:
        return created, True
    existing = await conn.fetchval("SELECT id FROM leads WHERE email = $1", sub.email)
    return existing, False


async def insert_submission(
    conn: asyncpg.Connection,
    lead_id: UUID,
    form_id: str,
    sub: SubmissionIn,
    user_agent: str | None,
) -> UUID:
    submission_id = uuid4()
    await conn.execute(
        """INSERT INTO submissions (id, lead_id, form_id, utm, landing_page, referrer, user_agent)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        submission_id,
        lead_id,
        form_id,
        sub.utm.model_dump(exclude_none=True),
        sub.landing_page,
        sub.referrer,
        (user_agent or "")[:512] or None,
    )
    return submission_id
