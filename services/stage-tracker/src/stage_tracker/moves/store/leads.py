"""stage-tracker's lead tables: current state, transitions, signals, erasure (asyncpg, SQL)."""

from __future__ import annotations

import json
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


async def erased_among(conn: asyncpg.Connection, lead_ids: Collection[UUID]) -> set[UUID]:
    rows = await conn.fetch(
        "SELECT lead_id FROM erased_leads WHERE lead_id = ANY($1::uuid[])", list(lead_ids)
    )
    return {r["lead_id"] for r in rows}


async def load_states(
    conn: asyncpg.Connection, lead_ids: Collection[UUID]
) -> tuple[dict[UUID, LeadState], dict[UUID, list[Signal]]]:
    """The leads' states, rows locked until the transaction ends, and the signals that wait
    for a capture (leads without a state): two queries for any number of leads."""
    ids = list(lead_ids)
    rows = await conn.fetch(
        "SELECT * FROM lead_stages WHERE lead_id = ANY($1::uuid[]) FOR UPDATE", ids
    )
    signal_rows = await conn.fetch(
        """SELECT lead_id, event_id, occurred_at, points, applied,
                  CASE WHEN applied THEN NULL ELSE signal END AS signal
           FROM lead_signals WHERE lead_id = ANY($1::uuid[])""",
        ids,
    )
    applied: dict[UUID, list[asyncpg.Record]] = {}
    pending: dict[UUID, list[Signal]] = {}
    for s in signal_rows:
        if s["applied"]:
            applied.setdefault(s["lead_id"], []).append(s)
        else:
            pending.setdefault(s["lead_id"], []).append(Signal.from_json(json.loads(s["signal"])))
    states = {r["lead_id"]: _state(r, applied.get(r["lead_id"], [])) for r in rows}
    return states, pending


def _state(row: asyncpg.Record, signals: list[asyncpg.Record]) -> LeadState:
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
            Contribution(s["event_id"], s["occurred_at"], s["points"])
            for s in signals
            if s["points"]
        ),
        seen=frozenset(s["event_id"] for s in signals),
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


async def save_states(conn: asyncpg.Connection, states: Sequence[SavedState]) -> None:
    """Upsert each lead's state, stall timer and decay key; the version counts the changes.

    One statement for the whole batch (arrays, one per column). `answers` is stored as the
    pool's jsonb codec stores a Python string (a JSON string holding the answers' JSON), so
    the text is encoded once more here and cast.
    """
    if not states:
        return
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
    await conn.execute(
        f"""INSERT INTO lead_stages (lead_id, funnel_id, funnel_version, stage, entered_at,
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
               updated_at = now()""",  # noqa: S608 - column names only
        *cols,
    )


async def version_of(conn: asyncpg.Connection, lead_id: UUID) -> int | None:
    value = await conn.fetchval("SELECT version FROM lead_stages WHERE lead_id = $1", lead_id)
    return None if value is None else int(value)


async def record_signals(
    conn: asyncpg.Connection, signals: Sequence[tuple[UUID, Signal, float, bool]]
) -> None:
    """Every signal a lead has had (lead id, signal, engagement points, applied yet): one
    statement. `signal` is stored as the pool's jsonb codec stores a Python string."""
    if not signals:
        return
    await conn.execute(
        """INSERT INTO lead_signals (lead_id, event_id, occurred_at, points, applied, signal)
           SELECT lead_id, event_id, occurred_at, points, applied, signal::jsonb
           FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::float8[], $5::bool[],
               $6::text[]) AS s (lead_id, event_id, occurred_at, points, applied, signal)
           ON CONFLICT (lead_id, event_id) DO UPDATE SET applied = excluded.applied,
               points = excluded.points""",
        [lead_id for lead_id, _, _, _ in signals],
        [s.event_id for _, s, _, _ in signals],
        [s.occurred_at for _, s, _, _ in signals],
        [points for _, _, points, _ in signals],
        [applied for _, _, _, applied in signals],
        [_string(s.to_json_text()) for _, s, _, _ in signals],
    )


async def add_moves(conn: asyncpg.Connection, moves: Sequence[tuple[UUID, Move]]) -> None:
    """Append transitions in the order given (the history is read back by id): one statement,
    its rows numbered in that order."""
    if not moves:
        return
    cols: list[list[Any]] = [[] for _ in range(11)]
    for lead_id, m in moves:
        row = (
            lead_id, m.funnel_id, m.funnel_version, m.from_stage, m.to_stage, m.to_position,
            m.reason, m.cause_event_id, m.cause_event_type, m.occurred_at, m.actor,
        )  # fmt: skip
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    await conn.execute(
        """INSERT INTO transitions (lead_id, funnel_id, funnel_version, from_stage, to_stage,
               to_position, reason, cause_event_id, cause_event_type, occurred_at, actor)
           SELECT lead_id, funnel_id, funnel_version, from_stage, to_stage, to_position,
               reason, cause_event_id, cause_event_type, occurred_at, actor
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[],
               $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[])
               WITH ORDINALITY AS m (lead_id, funnel_id, funnel_version, from_stage, to_stage,
                   to_position, reason, cause_event_id, cause_event_type, occurred_at, actor, n)
           ORDER BY n""",
        *cols,
    )


async def erase(conn: asyncpg.Connection, erased: Mapping[UUID, datetime]) -> None:
    """Forget people: state, history, signals; keep only the fact that the id is erased."""
    ids = list(erased)
    for table in ("lead_stages", "transitions", "lead_signals", "test_leads", "merged_leads"):
        await conn.execute(f"DELETE FROM {table} WHERE lead_id = ANY($1::uuid[])", ids)  # noqa: S608
    await conn.executemany(
        "INSERT INTO erased_leads (lead_id, erased_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        list(erased.items()),
    )


async def mark_test_leads(conn: asyncpg.Connection, lead_ids: list[UUID]) -> None:
    await conn.execute(
        "INSERT INTO test_leads (lead_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING",
        lead_ids,
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
