"""Saved playbooks; together with the shipped defaults they make the effective set."""

from __future__ import annotations

import asyncpg

from funnel_servicekit.db import wrote_a_row
from notifier.playbooks.catalog import default_playbooks
from notifier.playbooks.models import Playbook, StoredPlaybook


async def effective(conn: asyncpg.Connection) -> dict[str, StoredPlaybook]:
    """Shipped defaults, each replaced by a saved playbook of the same name."""
    return (await effective_at(conn))[1]


async def effective_at(conn: asyncpg.Connection) -> tuple[int, dict[str, StoredPlaybook]]:
    """The playbooks' revision and the effective set it stands for: one statement (one
    snapshot), so the two always go together."""
    found = {
        name: StoredPlaybook(book, "shipped", 0, None) for name, book in default_playbooks().items()
    }
    rows = await conn.fetch(
        """SELECT r.revision, p.name, p.definition, p.version, p.updated_at
           FROM playbooks_revision r LEFT JOIN playbooks p ON true"""
    )
    for row in rows:
        if row["name"] is not None:
            found[row["name"]] = StoredPlaybook(
                Playbook.model_validate(row["definition"]),
                "saved",
                row["version"],
                row["updated_at"],
            )
    return int(rows[0]["revision"]), found


async def revision(conn: asyncpg.Connection) -> int:
    """The playbooks' revision: moved by every write to them (a trigger)."""
    return int(await conn.fetchval("SELECT revision FROM playbooks_revision"))


async def playbooks(conn: asyncpg.Connection) -> list[Playbook]:
    return [s.playbook for s in (await effective(conn)).values()]


async def save(conn: asyncpg.Connection, playbook: Playbook, by: str) -> int:
    version: int = await conn.fetchval(
        """INSERT INTO playbooks (name, definition, updated_by) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO UPDATE SET definition = excluded.definition,
               version = playbooks.version + 1, updated_at = now(), updated_by = excluded.updated_by
           RETURNING version""",
        playbook.name,
        playbook.model_dump(mode="json"),
        by,
    )
    return version


_DELETE = "DELETE FROM playbooks WHERE name = $1 RETURNING true"


async def delete(conn: asyncpg.Connection, name: str) -> bool:
    return await wrote_a_row(conn, _DELETE, name)
