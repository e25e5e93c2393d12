"""Which definition a lead follows: (funnel id, version) -> FunnelDefinition, cached.

Published versions never change, so caching them forever in the process is safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from stage_tracker import definitions_store
from stage_tracker.funnel_parsing import parse_definition
from stage_tracker.funnels import FunnelDefinition, UnknownFunnel


class FunnelRegistry:
    def __init__(self) -> None:
        self._published: dict[tuple[str, int], FunnelDefinition] = {}

    async def get(self, conn: asyncpg.Connection, funnel_id: str, version: int) -> FunnelDefinition:
        """A published version; UnknownFunnel when there is none."""
        key = (funnel_id, version)
        cached = self._published.get(key)
        if cached is not None:
            return cached
        row = await definitions_store.get(conn, funnel_id, version)
        if row is None or row["status"] != "published":
            raise UnknownFunnel(f"no published funnel {funnel_id!r} v{version}")
        definition = parse_definition(row["source"], version)
        if definition.id != funnel_id:
            raise UnknownFunnel(f"funnel {funnel_id!r} v{version} names itself {definition.id!r}")
        self._published[key] = definition
        return definition

    async def latest(self, conn: asyncpg.Connection, funnel_id: str) -> FunnelDefinition:
        """The newest published version."""
        version = await definitions_store.latest_published_version(conn, funnel_id)
        if version is None:
            raise UnknownFunnel(f"unknown funnel {funnel_id!r}")
        return await self.get(conn, funnel_id, version)

    async def published(self, conn: asyncpg.Connection) -> PublishedVersions:
        """Which versions were published when: one query, read once per consumed batch."""
        return PublishedVersions(await definitions_store.published_versions(conn))


@dataclass(frozen=True)
class PublishedVersions:
    versions: Mapping[str, Sequence[tuple[int, datetime | None]]]

    def entered_at(self, funnel_id: str, at: datetime) -> int:
        """The version a lead captured at `at` enters: the newest one published by then.

        `at` is the capture's CloudEvents time, so the live consumer and a replay pick the same
        version however late they process it. A capture older than the funnel's first version
        enters that one.
        """
        versions = self.versions.get(funnel_id)
        if not versions:
            raise UnknownFunnel(f"unknown funnel {funnel_id!r}")
        by_then = [v for v, when in versions if when is None or when <= at]
        return max(by_then) if by_then else min(v for v, _ in versions)
