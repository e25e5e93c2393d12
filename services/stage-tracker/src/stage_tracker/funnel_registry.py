"""Which definition a lead follows: (funnel id, version) -> FunnelDefinition, cached.

Published versions never change, so caching them forever in the process is safe.
"""

from __future__ import annotations

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
        """The newest published version: the one a newly captured lead enters."""
        version = await definitions_store.latest_published_version(conn, funnel_id)
        if version is None:
            raise UnknownFunnel(f"unknown funnel {funnel_id!r}")
        return await self.get(conn, funnel_id, version)
