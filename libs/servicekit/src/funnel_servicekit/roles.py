"""A login role per service, made by the schema owner (docs/decisions/0044).

`python -m funnel_servicekit.roles ROLE=PASSWORD ...` with FUNNEL_MIGRATION_DATABASE_URL (the
owner's DSN): creates each role, or sets its password again, and takes from everyone the
right to create objects in the shared `public` schema. A role gets nothing else here: its
service's `migrate` grants it the rows of that service's schema alone.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Mapping, Sequence

import asyncpg

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def ensure_roles(owner_dsn: str, roles: Mapping[str, str]) -> None:
    """Each role exists and logs in with its password; nobody creates in `public`."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        for role, password in roles.items():
            if not _ROLE.match(role):
                raise ValueError(f"unsafe role name {role!r}")
            quoted = "'" + password.replace("'", "''") + "'"
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD {quoted}")
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    pairs = list(argv if argv is not None else sys.argv[1:])
    owner = os.environ.get("FUNNEL_MIGRATION_DATABASE_URL")
    if not owner or not pairs or any("=" not in p for p in pairs):
        print(
            "usage: FUNNEL_MIGRATION_DATABASE_URL=... "
            "python -m funnel_servicekit.roles ROLE=PASSWORD ..."
        )
        return 2
    asyncio.run(ensure_roles(owner, dict(p.split("=", 1) for p in pairs)))
    print(f"roles ready: {', '.join(p.split('=', 1)[0] for p in pairs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
