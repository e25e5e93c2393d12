"""The work queue's SQL: the score groups of a funnel (a skip scan of the index), one page by
the score now (a range scan per group, merged), one page by entry time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from stage_tracker.queue.models import Cursor, Group, GroupScan, LeadFilter
from stage_tracker.scoring.models.decay import SCORE_SQL

_GROUP = "funnel_version, half_life_seconds, fit_score, decay_sign"


class _Params:
    """Numbered parameters for SQL assembled from fixed fragments (values never in the text)."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


def _where(f: LeadFilter, p: _Params, now: float) -> list[str]:
    """The filters every query of the list shares (on `lead_stages l`)."""
    where = [f"l.funnel_id = {p(f.funnel_id)}"]
    if f.stage is not None:
        where.append(f"l.stage = {p(f.stage)}")
    if f.owner is not None:
        where.append(f"l.owner = {p(f.owner)}")
    if f.entered_after is not None:
        where.append(f"l.entered_at >= {p(f.entered_after)}")
    if f.entered_before is not None:
        where.append(f"l.entered_at < {p(f.entered_before)}")
    test = "EXISTS (SELECT 1 FROM test_leads t WHERE t.lead_id = l.lead_id)"
    where.append(test if f.test else f"NOT {test}")
    # A lead merged into another: its person is listed once, as the survivor.
    where.append("NOT EXISTS (SELECT 1 FROM merged_leads m WHERE m.lead_id = l.lead_id)")
    if f.stalled is not None:
        at = p(datetime.fromtimestamp(now, UTC), "::timestamptz")
        stalled = f"(l.stage = 'stalled' OR coalesce(l.timer_due_at <= {at}, false))"
        where.append(stalled if f.stalled else f"NOT {stalled}")
    return where


async def groups(conn: asyncpg.Connection, funnel_id: str, stage: str | None) -> list[Group]:
    """The distinct (version, half-life, fit, sign) of the funnel's leads (in `stage`): one
    index descent each (a recursive skip scan), whatever the number of leads."""
    p = _Params()
    prefix = f"funnel_id = {p(funnel_id)}" + ("" if stage is None else f" AND stage = {p(stage)}")
    rows = await conn.fetch(
        f"""WITH RECURSIVE g AS (
              (SELECT {_GROUP} FROM lead_stages WHERE {prefix} ORDER BY {_GROUP} LIMIT 1)
              UNION ALL
              SELECT n.* FROM g CROSS JOIN LATERAL (
                  SELECT {_GROUP} FROM lead_stages
                  WHERE {prefix} AND ({_GROUP}) > (g.funnel_version, g.half_life_seconds,
                                                   g.fit_score, g.decay_sign)
                  ORDER BY {_GROUP} LIMIT 1) n)
            SELECT {_GROUP} FROM g""",  # noqa: S608 - fixed fragments, values are parameters
        *p.values,
    )
    return [
        Group(r["funnel_version"], r["half_life_seconds"], r["fit_score"], r["decay_sign"])
        for r in rows
    ]


_COLUMNS = """l.lead_id, l.funnel_id, l.funnel_version, l.stage, l.entered_at, l.owner,
              l.timer_due_at, l.decay_key"""


async def by_score(
    conn: asyncpg.Connection,
    f: LeadFilter,
    scans: Sequence[GroupScan],
    now: float,
    cursor: Cursor | None,
    descending: bool,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` leads by (score now, decay key, lead id): the first `limit` of each
    group's key range (index order), merged."""
    if not scans:
        return []
    p = _Params()
    t = p(now, "::float8")
    score = SCORE_SQL.format(now=t)
    where = _where(f, p, now)
    g = [s.group for s in scans]
    groups_sql = (
        f"unnest({p([x.version for x in g], '::int[]')},"
        f" {p([x.half_life for x in g], '::float8[]')},"
        f" {p([x.fit for x in g], '::float8[]')}, {p([x.sign for x in g], '::int2[]')},"
        f" {p([s.keys.low for s in scans], '::float8[]')},"
        f" {p([s.keys.high for s in scans], '::float8[]')},"
        f" {p([s.score_min for s in scans], '::float8[]')},"
        f" {p([s.score_max for s in scans], '::float8[]')})"
        " AS g(v, h, f, sg, klo, khi, smin, smax)"
    )
    where += [
        "l.funnel_version = g.v",
        "l.half_life_seconds = g.h",
        "l.fit_score = g.f",
        "l.decay_sign = g.sg",
        "l.decay_key >= g.klo",
        "l.decay_key <= g.khi",
        f"{score} >= g.smin",
        f"{score} < g.smax",
    ]
    op, order = ("<", "DESC") if descending else (">", "ASC")
    if cursor is not None:
        where.append(
            f"({score}, l.decay_key, l.lead_id) {op} "
            f"({p(cursor.score, '::float8')}, {p(cursor.key, '::float8')}, {p(cursor.lead_id)})"
        )
    n = p(limit, "::int")
    sql = f"""SELECT x.* FROM {groups_sql}
              CROSS JOIN LATERAL (
                  SELECT {_COLUMNS}, {score} AS score_now FROM lead_stages l
                  WHERE {" AND ".join(where)}
                  ORDER BY l.decay_key {order}, l.lead_id {order} LIMIT {n}) x
              ORDER BY x.score_now {order}, x.decay_key {order}, x.lead_id {order}
              LIMIT {n}"""  # noqa: S608 - fixed fragments, values are parameters
    return list(await conn.fetch(sql, *p.values))


async def by_entry(
    conn: asyncpg.Connection,
    f: LeadFilter,
    score_min: Sequence[float],
    score_max: Sequence[float],
    now: float,
    cursor: Cursor | None,
    descending: bool,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` leads by (entered_at, lead id); `score_min[v - 1]`, `score_max[v - 1]`
    bound the score now of a lead on version v (a temperature)."""
    p = _Params()
    score = SCORE_SQL.format(now=p(now, "::float8"))
    where = _where(f, p, now)
    if score_min:
        where.append(f"{score} >= ({p(list(score_min), '::float8[]')})[l.funnel_version]")
        where.append(f"{score} < ({p(list(score_max), '::float8[]')})[l.funnel_version]")
    op, order = ("<", "DESC") if descending else (">", "ASC")
    if cursor is not None:
        where.append(
            f"(l.entered_at, l.lead_id) {op} ({p(cursor.entered_at)}, {p(cursor.lead_id)})"
        )
    sql = f"""SELECT {_COLUMNS}, {score} AS score_now FROM lead_stages l
              WHERE {" AND ".join(where)}
              ORDER BY l.entered_at {order}, l.lead_id {order}
              LIMIT {p(limit, "::int")}"""  # noqa: S608 - fixed fragments, values are parameters
    return list(await conn.fetch(sql, *p.values))
