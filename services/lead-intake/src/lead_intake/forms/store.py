"""The form registry's table."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg

from lead_intake.forms.models import Form, FormIn, FormSettings

_COLUMNS = "id, funnel_id, name, public_key, definition, created_at, updated_at"


def new_public_key() -> str:
    return f"pk_{secrets.token_urlsafe(18)}"


# The form's columns that are its fields under the same names (its settings are `definition`).
_FORM_COLUMNS = ("id", "funnel_id", "name", "public_key", "created_at", "updated_at")


def _form(row: Any) -> Form:
    settings = FormSettings.model_validate(row["definition"])
    return Form(settings=settings, **{column: row[column] for column in _FORM_COLUMNS})


async def get_form(conn: asyncpg.Connection, form_id: str) -> Form | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM forms WHERE id = $1", form_id)  # noqa: S608
    return _form(row) if row else None


async def get_form_by_public_key(conn: asyncpg.Connection, public_key: str) -> Form | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM forms WHERE public_key = $1",  # noqa: S608
        public_key,
    )
    return _form(row) if row else None


async def list_forms(conn: asyncpg.Connection, *, limit: int, after: str | None) -> list[Form]:
    rows = await conn.fetch(
        # `id > coalesce(...)`, not `$1 IS NULL OR id > $1`: one plan serves every page
        # (the connections plan once, decision 0083) and it starts at the key in the index.
        f"SELECT {_COLUMNS} FROM forms WHERE id > coalesce($1::text, '') "  # noqa: S608
        "ORDER BY id LIMIT $2",
        after,
        limit,
    )
    return [_form(r) for r in rows]


async def create_form(conn: asyncpg.Connection, form_id: str, body: FormIn) -> Form | None:
    """The new form; None when the id is taken."""
    row = await conn.fetchrow(
        f"""INSERT INTO forms (id, funnel_id, name, public_key, definition)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING
            RETURNING {_COLUMNS}""",  # noqa: S608
        form_id,
        body.funnel_id,
        body.name,
        new_public_key(),
        body.settings().model_dump(mode="json"),
    )
    return _form(row) if row else None


async def save_form(conn: asyncpg.Connection, form_id: str, body: FormIn) -> tuple[Form, bool]:
    """Create or replace a form's definition (its public key stays); True when created."""
    row = await conn.fetchrow(
        f"""INSERT INTO forms (id, funnel_id, name, public_key, definition)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET funnel_id = excluded.funnel_id,
                name = excluded.name, definition = excluded.definition, updated_at = now()
            RETURNING {_COLUMNS}, (xmax = 0) AS created""",  # noqa: S608
        form_id,
        body.funnel_id,
        body.name,
        new_public_key(),
        body.settings().model_dump(mode="json"),
    )
    return _form(row), bool(row["created"])


async def rotate_public_key(conn: asyncpg.Connection, form_id: str) -> Form | None:
    row = await conn.fetchrow(
        f"""UPDATE forms SET public_key = $2, updated_at = now() WHERE id = $1
            RETURNING {_COLUMNS}""",  # noqa: S608
        form_id,
        new_public_key(),
    )
    return _form(row) if row else None
