"""Funnel definitions: which definition a lead follows (the registry), and the use cases of
the funnels API: list, read, save a draft, publish.

Published versions never change, so the registry caches them forever in the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from funnel_servicekit.unit_of_work import Transactions
from stage_tracker.funnels import store
from stage_tracker.funnels.models.definition import (
    FunnelDefinition,
    PublishedVersions,
    UnknownFunnel,
)
from stage_tracker.funnels.models.parsing import parse_definition


class FunnelRegistry:
    def __init__(self) -> None:
        self._published: dict[tuple[str, int], FunnelDefinition] = {}
        # Which versions were published when, and the stamp they were read under.
        self._versions: tuple[str, PublishedVersions] | None = None

    async def get(self, conn: asyncpg.Connection, funnel_id: str, version: int) -> FunnelDefinition:
        """A published version; UnknownFunnel when there is none."""
        key = (funnel_id, version)
        cached = self._published.get(key)
        if cached is not None:
            return cached
        row = await store.get(conn, funnel_id, version)
        if row is None or row["status"] != "published":
            raise UnknownFunnel(f"no published funnel {funnel_id!r} v{version}")
        definition = parse_definition(row["source"], version)
        if definition.id != funnel_id:
            raise UnknownFunnel(f"funnel {funnel_id!r} v{version} names itself {definition.id!r}")
        self._published[key] = definition
        return definition

    async def latest(self, conn: asyncpg.Connection, funnel_id: str) -> FunnelDefinition:
        """The newest published version."""
        version = await store.latest_published_version(conn, funnel_id)
        if version is None:
            raise UnknownFunnel(f"unknown funnel {funnel_id!r}")
        return await self.get(conn, funnel_id, version)

    async def published(
        self, conn: asyncpg.Connection, stamp: str | None = None
    ) -> PublishedVersions:
        """Which versions were published when. With the `stamp` of the published versions
        read in this transaction (`LeadBatch.published`: how many, the newest publication),
        the versions read last under the same stamp, without a query; otherwise, or when a
        publish changed the stamp, read (one query) and kept under it."""
        if stamp and self._versions is not None and self._versions[0] == stamp:
            return self._versions[1]
        versions = PublishedVersions(await store.published_versions(conn))
        if stamp:
            self._versions = (stamp, versions)
        return versions


class IdMismatch(ValueError):
    """A draft whose definition names another funnel than the one it is saved under."""

    def __init__(self, definition_id: str, funnel_id: str) -> None:
        super().__init__(f"the definition's id is {definition_id!r}, the path says {funnel_id!r}")


class AlreadyPublished(Exception):
    """A published version never changes: publish a new draft instead."""

    def __init__(self, funnel_id: str, version: int) -> None:
        super().__init__(f"{funnel_id} v{version} is published; publish a new draft instead")


class NoSuchVersion(UnknownFunnel):
    """A funnel, or a version of it, that is neither draft nor published."""

    def __init__(self, funnel_id: str, version: int | None = None) -> None:
        super().__init__(f"{funnel_id} v{version}" if version else funnel_id)


@dataclass(frozen=True)
class FunnelVersion:
    definition: FunnelDefinition
    row: dict[str, Any]


async def list_funnels(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every funnel with its versions and the one new leads enter."""
    funnels = []
    for funnel_id in await store.funnel_ids(conn):
        versions = await store.versions(conn, funnel_id)
        published = [v["version"] for v in versions if v["status"] == "published"]
        funnels.append(
            {
                "id": funnel_id,
                "current_version": max(published) if published else None,
                "versions": [{"version": v["version"], "status": v["status"]} for v in versions],
            }
        )
    return funnels


async def funnel_version(
    conn: asyncpg.Connection, funnel_id: str, version: int | None
) -> FunnelVersion:
    """One version of a funnel (the newest published one when `version` is None)."""
    if version is None:
        version = await store.latest_published_version(conn, funnel_id)
        if version is None:
            raise NoSuchVersion(funnel_id)
    row = await store.get(conn, funnel_id, version)
    if row is None:
        raise NoSuchVersion(funnel_id, version)
    return FunnelVersion(parse_definition(row["source"], version), row)


async def create_draft(
    tx: Transactions, funnel_id: str, source: str, fmt: str, created_by: str
) -> int:
    """Save a valid definition as the funnel's next version, in draft; returns the version.

    InvalidDefinition with every error, IdMismatch when it names another funnel.
    """
    definition = parse_definition(source)
    if definition.id != funnel_id:
        raise IdMismatch(definition.id, funnel_id)
    async with tx() as uow:
        return await store.create_draft(uow.conn, funnel_id, source, fmt, created_by)


async def publish(tx: Transactions, funnel_id: str, version: int) -> None:
    """Publish a draft: from now on new leads enter it (NoSuchVersion, AlreadyPublished)."""
    async with tx() as uow:
        row = await store.get(uow.conn, funnel_id, version)
        if row is None:
            raise NoSuchVersion(funnel_id, version)
        if row["status"] == "published" or not await store.publish(uow.conn, funnel_id, version):
            raise AlreadyPublished(funnel_id, version)
