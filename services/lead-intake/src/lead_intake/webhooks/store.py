"""Ad-platform leads (waiting for their details, captured already), Meta lead forms mapped to
our forms, and webhook secrets per form and platform."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from funnel_servicekit.db import wrote_a_row
from lead_intake.webhooks.models import FormSecret, MetaForm, MetaFormIn


@dataclass(frozen=True)
class PendingLead:
    platform: str
    external_id: str
    form_id: str
    notice: dict[str, Any]
    attempts: int
    #: This attempt is the last one allowed: failing it parks the lead (see `retry_later`).
    last: bool = False


async def seen(conn: asyncpg.Connection, platform: str, external_id: str) -> UUID | None:
    lead_id: UUID | None = await conn.fetchval(
        "SELECT lead_id FROM platform_leads_seen WHERE platform = $1 AND external_id = $2",
        platform,
        external_id,
    )
    return lead_id


_MARK_SEEN = """
    INSERT INTO platform_leads_seen (platform, external_id, lead_id) VALUES ($1, $2, $3)
    ON CONFLICT DO NOTHING RETURNING true
"""


async def mark_seen(
    conn: asyncpg.Connection, platform: str, external_id: str, lead_id: UUID
) -> bool:
    """False when another delivery of the same lead got there first."""
    return await wrote_a_row(conn, _MARK_SEEN, platform, external_id, lead_id)


_ADD_PENDING = """
    INSERT INTO pending_platform_leads (platform, external_id, form_id, notice)
    SELECT $1, $2, $3, $4
    WHERE NOT EXISTS (SELECT 1 FROM platform_leads_seen WHERE platform = $1
                      AND external_id = $2)
    ON CONFLICT DO NOTHING RETURNING true
"""


async def add_pending(
    conn: asyncpg.Connection, platform: str, external_id: str, form_id: str, notice: dict[str, Any]
) -> bool:
    return await wrote_a_row(conn, _ADD_PENDING, platform, external_id, form_id, notice)


async def lock_delivery(conn: asyncpg.Connection, platform: str, external_id: str) -> None:
    """Two deliveries of one lead at once: the second waits here until this transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{platform}:{external_id}")


async def claim_due(
    conn: asyncpg.Connection, platform: str, limit: int, max_attempts: int, lease_seconds: float
) -> list[PendingLead]:
    """Due leads, leased: not due again for `lease_seconds` (nobody else fetches them then).

    The lease is taken and counted as an attempt in one statement (other replicas skip the
    locked rows), so the caller can fetch with no transaction open; a lead whose result is
    never recorded (a crash) is due again when the lease ends. `attempts` is the count
    before this attempt; `last` tells that no other is allowed.

    The last attempt parks the lead as it claims it (`next_attempt_at` 'infinity', out of
    the due range of the index): success deletes it, a failure leaves it parked with its
    error (`retry_later`), and so does a crash, so the claim reads the due leads only, not
    every lead that ever failed (`unpark` brings them back when `max_attempts` is raised).
    """
    rows = await conn.fetch(
        """UPDATE pending_platform_leads p
           SET attempts = p.attempts + 1,
               next_attempt_at = CASE WHEN p.attempts + 1 >= $3 THEN 'infinity'::timestamptz
                                      ELSE now() + make_interval(secs => $4) END
           FROM (SELECT platform, external_id FROM pending_platform_leads
                 WHERE platform = $1 AND next_attempt_at <= now() AND attempts < $3
                 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
           WHERE p.platform = due.platform AND p.external_id = due.external_id
           RETURNING p.platform, p.external_id, p.form_id, p.notice, p.attempts - 1 AS attempts,
               p.attempts >= $3 AS last""",
        platform,
        limit,
        max_attempts,
        lease_seconds,
    )
    return [
        PendingLead(
            r["platform"], r["external_id"], r["form_id"], r["notice"], r["attempts"], r["last"]
        )
        for r in rows
    ]


async def retry_later(
    conn: asyncpg.Connection, lead: PendingLead, error: str, delay_seconds: float
) -> None:
    """The attempt (counted when claimed) failed: due again in `delay_seconds`, or, after the
    last attempt allowed, parked (kept with its error, never due until `unpark`)."""
    await conn.execute(
        """UPDATE pending_platform_leads SET last_error = $3,
               next_attempt_at = CASE WHEN $5 THEN 'infinity'::timestamptz
                                      ELSE now() + make_interval(secs => $4) END
           WHERE platform = $1 AND external_id = $2""",
        lead.platform,
        lead.external_id,
        error[:500],
        float(delay_seconds),
        lead.last,
    )


async def unpark(conn: asyncpg.Connection, platform: str, max_attempts: int) -> tuple[int, int]:
    """Bring the parking in line with `max_attempts` as configured now (a fetcher's start):
    parked leads it allows more attempts are due at once, and leads that used them up while
    still in the due range (a lowered limit, or a version that did not park) are parked.
    Returns (made due, parked)."""
    rows = await conn.fetch(
        """UPDATE pending_platform_leads
           SET next_attempt_at = CASE WHEN attempts < $2 THEN now()
                                      ELSE 'infinity'::timestamptz END
           WHERE platform = $1 AND (next_attempt_at = 'infinity') = (attempts < $2)
           RETURNING attempts < $2 AS due""",
        platform,
        max_attempts,
    )
    due = sum(1 for r in rows if r["due"])
    return due, len(rows) - due


async def done(conn: asyncpg.Connection, lead: PendingLead) -> None:
    await conn.execute(
        "DELETE FROM pending_platform_leads WHERE platform = $1 AND external_id = $2",
        lead.platform,
        lead.external_id,
    )


# -- Meta lead forms -----------------------------------------------------------------------

# A Meta form's columns are its model's fields, named alike.
_META_FIELDS = tuple(MetaForm.model_fields)
_META_COLUMNS = ", ".join(_META_FIELDS)


def _meta_form(row: Any) -> MetaForm:
    return MetaForm.model_validate({f: row[f] for f in _META_FIELDS})


async def get_meta_form(conn: asyncpg.Connection, meta_form_id: str) -> MetaForm | None:
    row = await conn.fetchrow(
        f"SELECT {_META_COLUMNS} FROM meta_forms WHERE meta_form_id = $1",  # noqa: S608
        meta_form_id,
    )
    return _meta_form(row) if row else None


async def get_meta_forms(conn: asyncpg.Connection, meta_form_ids: list[str]) -> dict[str, MetaForm]:
    rows = await conn.fetch(
        f"SELECT {_META_COLUMNS} FROM meta_forms WHERE meta_form_id = ANY($1::text[])",  # noqa: S608
        meta_form_ids,
    )
    return {r["meta_form_id"]: _meta_form(r) for r in rows}


async def list_meta_forms(
    conn: asyncpg.Connection, *, limit: int, after: str | None
) -> list[MetaForm]:
    rows = await conn.fetch(
        f"SELECT {_META_COLUMNS} FROM meta_forms "  # noqa: S608
        # A key the index starts at on every page, with one plan (decision 0083).
        "WHERE meta_form_id > coalesce($1::text, '') ORDER BY meta_form_id LIMIT $2",
        after,
        limit,
    )
    return [_meta_form(r) for r in rows]


async def save_meta_form(
    conn: asyncpg.Connection, meta_form_id: str, body: MetaFormIn
) -> tuple[MetaForm, bool]:
    """Create or replace; True when created."""
    row = await conn.fetchrow(
        f"""INSERT INTO meta_forms (meta_form_id, form_id, field_map) VALUES ($1, $2, $3)
            ON CONFLICT (meta_form_id) DO UPDATE SET form_id = excluded.form_id,
                field_map = excluded.field_map, updated_at = now()
            RETURNING {_META_COLUMNS}, (xmax = 0) AS created""",  # noqa: S608
        meta_form_id,
        body.form_id,
        body.field_map,
    )
    return _meta_form(row), bool(row["created"])


_DELETE_META_FORM = "DELETE FROM meta_forms WHERE meta_form_id = $1 RETURNING true"


async def delete_meta_form(conn: asyncpg.Connection, meta_form_id: str) -> bool:
    return await wrote_a_row(conn, _DELETE_META_FORM, meta_form_id)


# -- Webhook secrets -----------------------------------------------------------------------

_FORM_SECRETS_COLUMNS = "platform, secret, rotated_at, previous_secret, previous_valid_until"


def _secret(row: Any) -> FormSecret:
    return FormSecret(
        row["platform"],
        row["secret"],
        row["rotated_at"],
        row["previous_secret"],
        row["previous_valid_until"],
    )


async def get_secret(conn: asyncpg.Connection, form_id: str, platform: str) -> FormSecret | None:
    row = await conn.fetchrow(
        f"SELECT {_FORM_SECRETS_COLUMNS} FROM form_webhook_secrets "  # noqa: S608 (fixed text)
        "WHERE form_id = $1 AND platform = $2",
        form_id,
        platform,
    )
    return _secret(row) if row else None


async def list_secrets(conn: asyncpg.Connection, form_id: str) -> list[FormSecret]:
    rows = await conn.fetch(
        f"SELECT {_FORM_SECRETS_COLUMNS} FROM form_webhook_secrets "  # noqa: S608 (fixed text)
        "WHERE form_id = $1 ORDER BY platform",
        form_id,
    )
    return [_secret(r) for r in rows]


async def rotate_secret(
    conn: asyncpg.Connection, form_id: str, platform: str, secret: str, grace_seconds: int
) -> FormSecret:
    """The new secret; the one it replaces stays valid for `grace_seconds`."""
    row = await conn.fetchrow(
        f"""INSERT INTO form_webhook_secrets (form_id, platform, secret)
            VALUES ($1, $2, $3)
            ON CONFLICT (form_id, platform) DO UPDATE SET secret = excluded.secret,
                previous_secret = form_webhook_secrets.secret,
                previous_valid_until = now() + make_interval(secs => $4),
                rotated_at = now()
            RETURNING {_FORM_SECRETS_COLUMNS}""",  # noqa: S608 (fixed text)
        form_id,
        platform,
        secret,
        float(grace_seconds),
    )
    return _secret(row)


_DELETE_FORM_KEY = (
    "DELETE FROM form_webhook_secrets WHERE form_id = $1 AND platform = $2 RETURNING true"
)


async def delete_secret(conn: asyncpg.Connection, form_id: str, platform: str) -> bool:
    return await wrote_a_row(conn, _DELETE_FORM_KEY, form_id, platform)


_USE_SIGNATURE = """
    INSERT INTO webhook_signatures_used (form_id, digest, signed_at) VALUES ($1, $2, $3)
    ON CONFLICT DO NOTHING RETURNING true
"""


async def use_signature(
    conn: asyncpg.Connection, form_id: str, digest: str, signed_at: datetime, keep_seconds: float
) -> bool:
    """Records a timestamped signature as used; False when it was used before (a replay).

    A concurrent second use waits on the key until the first commits, then finds it. Rows
    signed longer ago than `keep_seconds` can no longer be replayed (too old): a few go each
    time.
    """
    await conn.execute(
        """DELETE FROM webhook_signatures_used WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM webhook_signatures_used
               WHERE signed_at < now() - make_interval(secs => $1) LIMIT 50))""",
        keep_seconds,
    )
    return await wrote_a_row(conn, _USE_SIGNATURE, form_id, digest, signed_at)
