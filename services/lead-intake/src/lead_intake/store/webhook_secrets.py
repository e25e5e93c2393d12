"""Webhook secrets per form and platform."""

from __future__ import annotations

from typing import Any

import asyncpg

from lead_intake.webhook_secrets import FormSecret

_COLUMNS = "platform, secret, rotated_at, previous_secret, previous_valid_until"


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
        f"SELECT {_COLUMNS} FROM form_webhook_secrets "  # noqa: S608 (fixed text)
        "WHERE form_id = $1 AND platform = $2",
        form_id,
        platform,
    )
    return _secret(row) if row else None


async def list_secrets(conn: asyncpg.Connection, form_id: str) -> list[FormSecret]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM form_webhook_secrets "  # noqa: S608 (fixed text)
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
            RETURNING {_COLUMNS}""",  # noqa: S608 (fixed text)
        form_id,
        platform,
        secret,
        float(grace_seconds),
    )
    return _secret(row)


async def delete_secret(conn: asyncpg.Connection, form_id: str, platform: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM form_webhook_secrets WHERE form_id = $1 AND platform = $2 RETURNING true",
        form_id,
        platform,
    )
    return bool(deleted)
