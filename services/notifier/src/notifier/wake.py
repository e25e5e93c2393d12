"""The NOTIFY channels that wake the notifier's loops, importable by whoever commits their
work (the consumer, the API, the loops themselves) without importing one another.

A NOTIFY is transactional: it is delivered when the transaction that sent it commits.
"""

from __future__ import annotations

import asyncpg

#: The touch sender: new touches to send, or new contacts that let waiting touches go.
TOUCHES_CHANNEL = "notifier_touches"
#: The contact resolver: sealed personal data waiting for its data key.
CONTACTS_CHANNEL = "notifier_contacts"


async def notify(conn: asyncpg.Connection, channel: str) -> None:
    """Wake the loop listening on `channel` once the caller's transaction commits."""
    await conn.execute("SELECT pg_notify($1, '')", channel)
