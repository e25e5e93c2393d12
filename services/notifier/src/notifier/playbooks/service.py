"""The playbooks' use cases: read the effective set, check and save one, delete one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from funnel_servicekit.unit_of_work import Transactions
from notifier.channels.webhook import WebhookChannel
from notifier.channels.webhook_rules import RefusedDestination
from notifier.playbooks import store
from notifier.playbooks.catalog import default_playbooks
from notifier.playbooks.models import Playbook, StoredPlaybook
from notifier.playbooks.models.templates import TemplateProblem, check, shipped


class PlaybookInvalid(ValueError):
    """A playbook that cannot be saved: the fields at fault (and a template's line)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Destinations:
    """Where webhooks may go (FUNNEL_WEBHOOK_ALLOWED_HOSTS and its private-address switch)."""

    allowed_hosts: Sequence[str]
    allow_private: bool
    timeout: float


class PlaybookCache:
    """The effective playbooks kept in memory (parsed and checked once), read again only
    when the playbooks' revision moved: every write to them moves it in the same
    transaction, so a save is seen by the first batch whose own reads tell the new revision
    (the consumer's erased-and-test read and the sender's claim carry it; no statement of
    its own). One per process and database: the consumer and the sender each hold one."""

    def __init__(self) -> None:
        self._revision: int | None = None
        self._books: dict[str, StoredPlaybook] = {}
        self.reads = 0  # how many times the playbooks were read (tests)

    async def effective(
        self, conn: asyncpg.Connection, revision: int | None = None
    ) -> dict[str, StoredPlaybook]:
        """The effective set at `revision` (None: asked of the database, one statement, unless
        nothing is held yet: then the set is read with its revision at once)."""
        if revision is None and self._revision is not None:
            revision = await store.revision(conn)
        if self._revision is None or revision != self._revision:
            self._revision, self._books = await store.effective_at(conn)
            self.reads += 1
        return self._books

    async def playbooks(
        self, conn: asyncpg.Connection, revision: int | None = None
    ) -> list[Playbook]:
        return [s.playbook for s in (await self.effective(conn, revision)).values()]


async def effective(conn: asyncpg.Connection) -> dict[str, StoredPlaybook]:
    """Every effective playbook: the shipped defaults, each replaced by a saved one."""
    return await store.effective(conn)


async def one(conn: asyncpg.Connection, name: str) -> StoredPlaybook | None:
    return (await store.effective(conn)).get(name)


async def save(
    tx: Transactions, playbook: Playbook, by: str, destinations: Destinations
) -> StoredPlaybook:
    """Check the playbook (templates render, the webhook destination is allowed: a DNS
    lookup, before the transaction opens), save it, and return it as now in effect."""
    _check_templates(playbook)
    await _check_destination(playbook, destinations)
    async with tx() as uow:
        await store.save(uow.conn, playbook, by)
        return (await store.effective(uow.conn))[playbook.name]


async def delete(conn: asyncpg.Connection, name: str) -> bool:
    """Remove a saved playbook (a shipped one of the same name comes back); False if none."""
    return await store.delete(conn, name)


def not_deleted_because(name: str) -> str | None:
    """Why there was nothing to delete, when there is more to say than "no such playbook"."""
    if name in default_playbooks():
        return "shipped playbooks are switched off with enabled: false"
    return None


def _check_templates(playbook: Playbook) -> None:
    """An email playbook's templates render (with the line when not)."""
    if playbook.channel != "email":
        return
    try:
        templates = playbook.templates or shipped(playbook.template)
    except KeyError as exc:
        raise PlaybookInvalid([{"field": "template", "message": str(exc)}]) from exc
    try:
        check(templates, playbook.kind)
    except TemplateProblem as exc:
        error: dict[str, Any] = {
            "field": f"templates.{exc.locale}.{exc.part}",
            "message": exc.message,
        }
        if exc.line is not None:
            error["line"] = exc.line
        raise PlaybookInvalid([error]) from exc


async def _check_destination(playbook: Playbook, destinations: Destinations) -> None:
    """A webhook's host is on the allow-list and resolves to public addresses only (unless
    FUNNEL_WEBHOOK_ALLOW_PRIVATE_ADDRESSES); each send checks again (DNS may change)."""
    if playbook.webhook is None:
        return
    channel = WebhookChannel(
        secret="",
        allowed_hosts=destinations.allowed_hosts,
        allow_private=destinations.allow_private,
        timeout=destinations.timeout,
    )
    try:
        await channel.resolve(playbook.webhook.url)
    except RefusedDestination as exc:
        raise PlaybookInvalid([{"field": "webhook.url", "message": str(exc)}]) from exc
    except OSError:
        pass  # not resolvable now (DNS not set up yet): every send resolves and checks again
