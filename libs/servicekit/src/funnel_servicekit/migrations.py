"""Versioned SQL migrations per service schema: NNNN_name.sql files applied once, in order.

The kit's own tables (outbox, inbox) come first as the `kit` component, then the service's.
An advisory lock lets several replicas run `migrate` at once; an edited, already-applied file
is refused (its checksum no longer matches).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

KIT_MIGRATIONS = Path(__file__).parent / "kit_migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration set that cannot be applied safely."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load(component: str, directory: Path) -> list[Migration]:
    """Migrations of one component, ordered by version; refuses gaps and odd names."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(component, int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"{component}: versions must be 1..n without gaps, got {versions}")
    return found


def all_migrations(service_dir: Path) -> list[Migration]:
    return load("kit", KIT_MIGRATIONS) + load("service", service_dir)


_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _checked(schema: str) -> str:
    """Schema names go into SQL text (identifiers cannot be bound), so only safe ones pass."""
    if not _IDENT.match(schema):
        raise MigrationError(f"unsafe schema name {schema!r}")
    return schema


async def _ensure_ledger(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(
        f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
              component text NOT NULL, version integer NOT NULL, name text NOT NULL,
              checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (component, version))"""
    )


async def apply(conn: asyncpg.Connection, schema: str, service_dir: Path) -> list[str]:
    """Apply what is pending, each file in its own transaction; return what was applied."""
    schema = _checked(schema)
    migrations = all_migrations(service_dir)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
    try:
        await _ensure_ledger(conn, schema)
        rows = await conn.fetch(
            f'SELECT component, version, checksum FROM "{schema}".schema_migrations'
        )
        done = {(r["component"], r["version"]): r["checksum"] for r in rows}
        for m in migrations:
            key = (m.component, m.version)
            if key in done:
                if done[key] != m.checksum:
                    raise MigrationError(f"{m.component} {m.version:04d}_{m.name} was edited")
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                await conn.execute(m.sql)
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (component, version, name, checksum)'
                    " VALUES ($1, $2, $3, $4)",
                    m.component,
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(f"{m.component}/{m.version:04d}_{m.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    return applied_now


def role_of(dsn: str) -> str | None:
    """The user name of a `postgresql://user:...@host/db` DSN."""
    user = urlsplit(dsn).username
    return unquote(user) if user else None


async def grant_runtime(conn: asyncpg.Connection, schema: str, role: str) -> None:
    """What a service's own role may do: read and write the rows of its schema's tables and
    sequences, run its functions; nothing else (no DDL, no other schema). Run again after every
    migration (the grants cover the objects that exist)."""
    schema = _checked(schema)
    who = '"' + role.replace('"', '""') + '"'
    await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {who}')
    await conn.execute(
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {who}'
    )
    await conn.execute(
        f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {who}'
    )
    await conn.execute(f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "{schema}" TO {who}')


async def pending(conn: asyncpg.Connection, schema: str, service_dir: Path) -> list[str]:
    """Migrations not yet applied (for /readyz)."""
    schema = _checked(schema)
    exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_migrations')
    migrations = all_migrations(service_dir)
    if exists is None:
        return [f"{m.component}/{m.version:04d}" for m in migrations]
    rows = await conn.fetch(f'SELECT component, version FROM "{schema}".schema_migrations')
    done = {(r["component"], r["version"]) for r in rows}
    return [
        f"{m.component}/{m.version:04d}" for m in migrations if (m.component, m.version) not in done
    ]
