"""The work queue's use case: one page of a funnel's leads, by their score now or their entry."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from stage_tracker.funnels.models.definition import FunnelDefinition, UnknownFunnel
from stage_tracker.funnels.service import FunnelRegistry
from stage_tracker.queue import store
from stage_tracker.queue.models import Cursor, LeadFilter, Sort, Thresholds, group_scan
from stage_tracker.scoring.models.decay import epoch
from stage_tracker.scoring.models.score import temperature


class UnknownStage(LookupError):
    """A stage that no version of the funnel has."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_after: str | None


async def _versions(
    conn: asyncpg.Connection, registry: FunnelRegistry, funnel_id: str
) -> dict[int, FunnelDefinition]:
    published = (await registry.published(conn)).versions.get(funnel_id)
    if not published:
        raise UnknownFunnel(f"unknown funnel {funnel_id!r}")
    return {v: await registry.get(conn, funnel_id, v) for v, _ in published}


async def list_leads(
    conn: asyncpg.Connection,
    registry: FunnelRegistry,
    query: LeadFilter,
    sort: Sort,
    limit: int,
    now: datetime,
    cursor: Cursor | None = None,
) -> Page:
    """A page of the funnel's leads (UnknownFunnel, UnknownStage). Scores are as of `now` on
    the first page, and as of the same instant on every page after it (the cursor keeps it)."""
    at = cursor.at if cursor is not None else epoch(now)
    descending = sort.startswith("-")
    by_score = sort.endswith("score")
    groups = await store.groups(conn, query.funnel_id, query.stage) if by_score else []
    versions: dict[int, FunnelDefinition] = {}
    for v in sorted({g.version for g in groups}):
        # Published versions are cached forever: no query once seen.
        with contextlib.suppress(UnknownFunnel):
            versions[v] = await registry.get(conn, query.funnel_id, v)
    if not versions:
        # No lead to list by score, or a sort by entry: the funnel and the stage are checked
        # against every published version (one query).
        versions = await _versions(conn, registry, query.funnel_id)
        if query.stage is not None and not any(d.has_stage(query.stage) for d in versions.values()):
            raise UnknownStage(query.stage)
    bands = {v: Thresholds(d.scoring.warm_at, d.scoring.hot_at) for v, d in versions.items()}
    if by_score:
        scans = []
        for group in groups:
            band = bands.get(group.version)
            if band is None:
                continue  # a version that is not published: not listed
            scan = group_scan(group, band, query.temperature, at, cursor, descending)
            if scan is not None:
                scans.append(scan)
        rows = await store.by_score(conn, query, scans, at, cursor, descending, limit + 1)
    else:
        low: list[float] = []
        high: list[float] = []
        if query.temperature is not None:
            nothing = (math.inf, -math.inf)
            for v in range(1, max(versions) + 1):
                band = bands.get(v)
                lo, hi = band.score_range(query.temperature) if band else nothing
                low.append(lo)
                high.append(hi)
        rows = await store.by_entry(conn, query, low, high, at, cursor, descending, limit + 1)
    items = [_item(r, versions) for r in rows[:limit]]
    next_after = None
    if len(rows) > limit:
        last = rows[limit - 1]
        if by_score:
            score, key = last["score_now"], last["decay_key"]
            after = Cursor(sort, at, last["lead_id"], score=score, key=key)
        else:
            after = Cursor(sort, at, last["lead_id"], entered_at=last["entered_at"])
        next_after = after.encode()
    return Page(items, next_after)


def _item(row: asyncpg.Record, versions: dict[int, FunnelDefinition]) -> dict[str, Any]:
    score = row["score_now"]
    funnel = versions.get(row["funnel_version"])
    return {
        "lead_id": str(row["lead_id"]),
        "funnel_id": row["funnel_id"],
        "stage": row["stage"],
        "entered_at": row["entered_at"],
        "score": round(score, 2),
        "temperature": temperature(funnel.scoring, score) if funnel else None,
        "owner": row["owner"],
        "timer_due_at": row["timer_due_at"],
    }
