"""stage-tracker's lead tables: current state, transitions, signals, erasure (asyncpg, SQL)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii as _string  # json.dumps of a str
from typing import Any
from uuid import UUID

import asyncpg

from funnel_contracts.envelope import json_text
from stage_tracker.moves.models.machine import Answer, LeadState, Move
from stage_tracker.scoring.models.decay import decay_key
from stage_tracker.scoring.models.score import Contribution, Score
from stage_tracker.scoring.models.signals import Signal

# (lead id, state, stall timer due at, half-life in seconds of the funnel version scoring it)
SavedState = tuple[UUID, LeadState, datetime | None, float]


async def lock_leads(conn: asyncpg.Connection, lead_ids: Collection[UUID]) -> None:
    """One writer per lead (topics are not ordered among themselves, replicas share partitions,
    the API moves leads too): transaction advisory locks, always taken in the same order."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock(h) FROM (
               SELECT hashtext('lead:' || k) AS h FROM unnest($1::text[]) AS k ORDER BY 1
           ) AS ordered""",
        [str(lead_id) for lead_id in lead_ids],
    )


# A stamp of the published funnel versions (how many, the newest publication): the registry
# reads them again only when it changes (a publish), read with the leads at no extra trip.
_PUBLISHED_STAMP = """(SELECT count(*) || ':' || coalesce(max(published_at)::text, '')
    FROM funnel_definitions WHERE status = 'published')"""


async def load_states(
    conn: asyncpg.Connection, lead_ids: Collection[UUID]
) -> tuple[dict[UUID, LeadState], dict[UUID, list[Signal]], set[UUID], str]:
    """The leads' states, the signals that wait for a capture (leads without a state), which
    of the leads are erased, and a stamp of the published funnel versions: one query for any
    number of leads. The caller holds the leads' advisory locks (`lock_leads`, taken in a
    statement before this one, so this one's snapshot sees what the last holder committed);
    every writer of a lead's rows takes them, so the rows need no row lock of their own."""
    rows = await conn.fetch(
        f"""SELECT u.id AS lead, l.lead_id IS NOT NULL AS found,
                  EXISTS (SELECT 1 FROM erased_leads e WHERE e.lead_id = u.id) AS erased,
                  {_PUBLISHED_STAMP} AS published, l.*, g.*
           FROM unnest($1::uuid[]) AS u(id)
           LEFT JOIN lead_stages l ON l.lead_id = u.id
           LEFT JOIN LATERAL (
               SELECT array_agg(event_id) AS s_ids, array_agg(occurred_at) AS s_at,
                      array_agg(points) AS s_points, array_agg(applied) AS s_applied,
                      array_agg(CASE WHEN applied THEN NULL ELSE signal #>> '{{}}' END)
                          AS s_signals
               FROM lead_signals s WHERE s.lead_id = u.id) AS g ON true""",  # noqa: S608
        list(set(lead_ids)),
    )
    states: dict[UUID, LeadState] = {}
    pending: dict[UUID, list[Signal]] = {}
    erased: set[UUID] = set()
    stamp = ""
    for r in rows:
        lead, stamp = r["lead"], r["published"]
        if r["erased"]:
            erased.add(lead)
        applied: list[tuple[str, datetime, float]] = []
        if r["s_ids"] is not None:
            for event_id, at, points, was_applied, signal in zip(
                r["s_ids"], r["s_at"], r["s_points"], r["s_applied"], r["s_signals"], strict=True
            ):
                if was_applied:
                    applied.append((event_id, at, points))
                else:
                    pending.setdefault(lead, []).append(Signal.from_json(json.loads(signal)))
        if r["found"]:
            states[lead] = _state(r, applied)
    return states, pending, erased, stamp


def _state(row: asyncpg.Record, signals: list[tuple[str, datetime, float]]) -> LeadState:
    """A lead's state from its row and its applied signals (event id, time, points)."""
    answers = json.loads(row["answers"])
    return LeadState(
        funnel_id=row["funnel_id"],
        funnel_version=row["funnel_version"],
        stage=row["stage"],
        stage_entered_at=row["entered_at"],
        previous_stage=row["previous_stage"],
        answers={
            k: Answer(a["value"], datetime.fromisoformat(a["at"]), a["event_id"])
            for k, a in answers.items()
        },
        contributions=tuple(
            Contribution(event_id, at, points) for event_id, at, points in signals if points
        ),
        seen=frozenset(event_id for event_id, _, _ in signals),
        last_activity_at=row["last_activity_at"] or row["entered_at"],
        as_of=row["as_of"] or row["entered_at"],
        score=Score(row["fit_score"], row["engagement_score"], row["score"], row["temperature"]),
        owner=row["owner"],
        version=row["version"],
    )


def _answers_json(state: LeadState) -> str:
    return json_text(
        {
            k: {"value": a.value, "at": a.at.isoformat(), "event_id": a.event_id}
            for k, a in state.answers.items()
        }
    )


# Bumped only when something of the row changes (a duplicate event writes the same row).
_TRACKED = (
    "funnel_id, funnel_version, stage, entered_at, previous_stage, fit_score, engagement_score,"
    " score, temperature, answers, last_activity_at, as_of, timer_due_at, owner"
)
_OLD = ", ".join(f"lead_stages.{c.strip()}" for c in _TRACKED.split(","))
_NEW = ", ".join(f"excluded.{c.strip()}" for c in _TRACKED.split(","))


_SAVE_STATES = f"""INSERT INTO lead_stages (lead_id, funnel_id, funnel_version, stage, entered_at,
               previous_stage, fit_score, engagement_score, score, temperature, answers,
               last_activity_at, as_of, timer_due_at, owner, half_life_seconds, decay_sign,
               decay_key)
           SELECT lead_id, funnel_id, funnel_version, stage, entered_at, previous_stage,
               fit_score, engagement_score, score, temperature, answers::jsonb,
               last_activity_at, as_of, timer_due_at, owner, half_life_seconds, decay_sign,
               decay_key
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::timestamptz[],
               $6::text[], $7::float8[], $8::float8[], $9::float8[], $10::text[], $11::text[],
               $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::text[],
               $16::float8[], $17::int2[], $18::float8[])
               AS s (lead_id, funnel_id, funnel_version, stage, entered_at, previous_stage,
                   fit_score, engagement_score, score, temperature, answers,
                   last_activity_at, as_of, timer_due_at, owner, half_life_seconds,
                   decay_sign, decay_key)
           ON CONFLICT (lead_id) DO UPDATE SET funnel_id = excluded.funnel_id,
               funnel_version = excluded.funnel_version, stage = excluded.stage,
               entered_at = excluded.entered_at, previous_stage = excluded.previous_stage,
               fit_score = excluded.fit_score, engagement_score = excluded.engagement_score,
               score = excluded.score, temperature = excluded.temperature,
               answers = excluded.answers, last_activity_at = excluded.last_activity_at,
               as_of = excluded.as_of, timer_due_at = excluded.timer_due_at,
               owner = excluded.owner, half_life_seconds = excluded.half_life_seconds,
               decay_sign = excluded.decay_sign, decay_key = excluded.decay_key,
               version = lead_stages.version
                   + CASE WHEN ({_OLD}) IS DISTINCT FROM ({_NEW}) THEN 1 ELSE 0 END,
               updated_at = now()"""  # noqa: S608 - column names only


def _states_columns(states: Sequence[SavedState]) -> list[list[Any]]:
    """Each lead's state, stall timer and decay key as `_SAVE_STATES`'s 18 arrays.
    `answers` is stored as the pool's jsonb codec stores a Python string (a JSON string
    holding the answers' JSON), so the text is encoded once more here and cast."""
    cols: list[list[Any]] = [[] for _ in range(18)]
    for lead_id, state, timer_due_at, half_life in states:
        key = decay_key(state.score.engagement, state.as_of, half_life)
        score = state.score
        row = (
            lead_id, state.funnel_id, state.funnel_version, state.stage, state.stage_entered_at,
            state.previous_stage, score.fit, score.engagement, score.total, score.temperature,
            _string(_answers_json(state)), state.last_activity_at, state.as_of, timer_due_at,
            state.owner, half_life, key.sign, key.key,
        )  # fmt: skip
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


async def version_of(conn: asyncpg.Connection, lead_id: UUID) -> int | None:
    value = await conn.fetchval("SELECT version FROM lead_stages WHERE lead_id = $1", lead_id)
    return None if value is None else int(value)


_RECORD_SIGNALS = """INSERT INTO lead_signals
               (lead_id, event_id, occurred_at, points, applied, signal)
           SELECT lead_id, event_id, occurred_at, points, applied, signal::jsonb
           FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::float8[], $5::bool[],
               $6::text[]) AS s (lead_id, event_id, occurred_at, points, applied, signal)
           ON CONFLICT (lead_id, event_id) DO UPDATE SET applied = excluded.applied,
               points = excluded.points"""


def _signals_columns(signals: Sequence[tuple[UUID, Signal, float, bool]]) -> list[list[Any]]:
    """Every signal a lead has had (lead id, signal, engagement points, applied yet) as
    `_RECORD_SIGNALS`'s arrays. `signal` is stored as the pool's jsonb codec stores a
    Python string."""
    return [
        [lead_id for lead_id, _, _, _ in signals],
        [s.event_id for _, s, _, _ in signals],
        [s.occurred_at for _, s, _, _ in signals],
        [points for _, _, points, _ in signals],
        [applied for _, _, _, applied in signals],
        [_string(s.to_json_text()) for _, s, _, _ in signals],
    ]


# Transitions appended in the order given (the history is read back by id), numbered so.
_ADD_MOVES = """INSERT INTO transitions (lead_id, funnel_id, funnel_version, from_stage, to_stage,
               to_position, reason, cause_event_id, cause_event_type, occurred_at, actor)
           SELECT lead_id, funnel_id, funnel_version, from_stage, to_stage, to_position,
               reason, cause_event_id, cause_event_type, occurred_at, actor
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[],
               $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[])
               WITH ORDINALITY AS m (lead_id, funnel_id, funnel_version, from_stage, to_stage,
                   to_position, reason, cause_event_id, cause_event_type, occurred_at, actor, n)
           ORDER BY n"""


def _moves_columns(moves: Sequence[tuple[UUID, Move]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(11)]
    for lead_id, m in moves:
        row = (
            lead_id, m.funnel_id, m.funnel_version, m.from_stage, m.to_stage, m.to_position,
            m.reason, m.cause_event_id, m.cause_event_type, m.occurred_at, m.actor,
        )  # fmt: skip
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


_MARK_TESTS = "INSERT INTO test_leads (lead_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING"


def _shift(sql: str, by: int) -> str:
    """`sql` with its parameters $n renumbered $(n + by)."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + by}", sql)


@functools.lru_cache(maxsize=16)
def write_sql(states: bool, moves: bool, signals: bool, tests: bool) -> str:
    """One statement of the writes present: the states, the transitions, the signals and
    the test marks, each a data-modifying CTE (different tables, none reads another's)."""
    parts = [
        (states, "st", _SAVE_STATES, 18),
        (moves, "mv", _ADD_MOVES, 11),
        (signals, "sg", _RECORD_SIGNALS, 6),
        (tests, "ts", _MARK_TESTS, 1),
    ]
    ctes, first = [], 0
    for wanted, name, sql, n in parts:
        if wanted:
            shifted = _shift(sql, first)
            ctes.append(f"{name} AS ({shifted})")
            first += n
    return f"WITH {', '.join(ctes)} SELECT"


async def write_leads(
    conn: asyncpg.Connection,
    states: Sequence[SavedState],
    moves: Sequence[tuple[UUID, Move]],
    signals: Sequence[tuple[UUID, Signal, float, bool]],
    tests: Sequence[UUID],
) -> None:
    """A batch's writes in one statement: each lead's state, stall timer and decay key
    upserted (the version counts the changes), the transitions appended in the order given,
    every signal recorded, the test leads marked."""
    args: list[list[Any]] = []
    if states:
        args += _states_columns(states)
    if moves:
        args += _moves_columns(moves)
    if signals:
        args += _signals_columns(signals)
    if tests:
        args.append(list(tests))
    if args:
        await conn.execute(write_sql(bool(states), bool(moves), bool(signals), bool(tests)), *args)


async def erase(conn: asyncpg.Connection, erased: Mapping[UUID, datetime]) -> None:
    """Forget people: state, history, signals; keep only the fact that the id is erased."""
    ids = list(erased)
    for table in ("lead_stages", "transitions", "lead_signals", "test_leads", "merged_leads"):
        await conn.execute(f"DELETE FROM {table} WHERE lead_id = ANY($1::uuid[])", ids)  # noqa: S608
    await conn.executemany(
        "INSERT INTO erased_leads (lead_id, erased_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        list(erased.items()),
    )


async def record_merges(
    conn: asyncpg.Connection, merges: list[tuple[UUID, UUID, datetime]]
) -> None:
    """Merged people, in merge order (a chain folds along): the other lead leaves the work
    queue; the survivor stays a test lead only when the other was one too (a real person
    merged with a test lead is real)."""
    for survivor, other, at in merges:
        await conn.execute(_RECORD_MERGE, survivor, other, at)


_RECORD_MERGE = """WITH unmarked AS (
        DELETE FROM test_leads WHERE lead_id = $1
            AND NOT EXISTS (SELECT 1 FROM test_leads WHERE lead_id = $2))
    INSERT INTO merged_leads (lead_id, merged_into, merged_at) VALUES ($2, $1, $3)
    ON CONFLICT DO NOTHING"""


async def journey(conn: asyncpg.Connection, lead_id: UUID) -> dict[str, Any] | None:
    """The lead's row (with its decay key) and its transitions; None for an unknown lead."""
    current = await conn.fetchrow(
        """SELECT funnel_id, funnel_version, stage, entered_at, fit_score, engagement_score,
                  as_of, timer_due_at, owner, version, half_life_seconds, decay_sign, decay_key,
                  EXISTS (SELECT 1 FROM test_leads t WHERE t.lead_id = l.lead_id) AS test
           FROM lead_stages l WHERE lead_id = $1""",
        lead_id,
    )
    if current is None:
        return None
    rows = await conn.fetch(
        """SELECT from_stage, to_stage, to_position, reason, cause_event_id, cause_event_type,
                  actor, funnel_version, occurred_at
           FROM transitions WHERE lead_id = $1 ORDER BY id""",
        lead_id,
    )
    return {**dict(current), "transitions": [dict(r) for r in rows]}
