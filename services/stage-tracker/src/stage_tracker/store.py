"""stage-tracker's lead tables: current state, transitions, signals, erasure (asyncpg, SQL)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from stage_tracker.machine import Answer, LeadState, Move
from stage_tracker.scoring import Contribution, Score
from stage_tracker.signals import Signal


async def is_erased(conn: asyncpg.Connection, lead_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM erased_leads WHERE lead_id = $1", lead_id))


async def lock_state(conn: asyncpg.Connection, lead_id: UUID) -> LeadState | None:
    """The lead's state, its row locked until the transaction ends (one writer per lead)."""
    row = await conn.fetchrow("SELECT * FROM lead_stages WHERE lead_id = $1 FOR UPDATE", lead_id)
    if row is None:
        return None
    signals = await conn.fetch(
        "SELECT event_id, occurred_at, points FROM lead_signals WHERE lead_id = $1 AND applied",
        lead_id,
    )
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
    )


async def save_state(
    conn: asyncpg.Connection, lead_id: UUID, state: LeadState, timer_due_at: datetime | None
) -> None:
    answers = {
        k: {"value": a.value, "at": a.at.isoformat(), "event_id": a.event_id}
        for k, a in state.answers.items()
    }
    await conn.execute(
        """INSERT INTO lead_stages (lead_id, funnel_id, funnel_version, stage, entered_at,
               previous_stage, fit_score, engagement_score, score, temperature, answers,
               last_activity_at, as_of, timer_due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           ON CONFLICT (lead_id) DO UPDATE SET funnel_id = excluded.funnel_id,
               funnel_version = excluded.funnel_version, stage = excluded.stage,
               entered_at = excluded.entered_at, previous_stage = excluded.previous_stage,
               fit_score = excluded.fit_score, engagement_score = excluded.engagement_score,
               score = excluded.score, temperature = excluded.temperature,
               answers = excluded.answers, last_activity_at = excluded.last_activity_at,
               as_of = excluded.as_of, timer_due_at = excluded.timer_due_at, updated_at = now()""",
        lead_id,
        state.funnel_id,
        state.funnel_version,
        state.stage,
        state.stage_entered_at,
        state.previous_stage,
        state.score.fit,
        state.score.engagement,
        state.score.total,
        state.score.temperature,
        json.dumps(answers),
        state.last_activity_at,
        state.as_of,
        timer_due_at,
    )


async def record_signal(
    conn: asyncpg.Connection, lead_id: UUID, signal: Signal, points: float, *, applied: bool
) -> None:
    await conn.execute(
        """INSERT INTO lead_signals (lead_id, event_id, occurred_at, points, applied, signal)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (lead_id, event_id) DO UPDATE SET applied = excluded.applied,
               points = excluded.points""",
        lead_id,
        signal.event_id,
        signal.occurred_at,
        points,
        applied,
        json.dumps(signal.to_json()),
    )


async def pending_signals(conn: asyncpg.Connection, lead_id: UUID) -> list[Signal]:
    rows = await conn.fetch(
        "SELECT signal FROM lead_signals WHERE lead_id = $1 AND NOT applied", lead_id
    )
    return [Signal.from_json(json.loads(r["signal"])) for r in rows]


async def add_moves(conn: asyncpg.Connection, lead_id: UUID, moves: tuple[Move, ...]) -> None:
    await conn.executemany(
        """INSERT INTO transitions (lead_id, funnel_id, funnel_version, from_stage, to_stage,
               to_position, reason, cause_event_id, cause_event_type, occurred_at, actor)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        [
            (
                lead_id,
                m.funnel_id,
                m.funnel_version,
                m.from_stage,
                m.to_stage,
                m.to_position,
                m.reason,
                m.cause_event_id,
                m.cause_event_type,
                m.occurred_at,
                m.actor,
            )
            for m in moves
        ],
    )


async def erase(conn: asyncpg.Connection, lead_id: UUID, erased_at: datetime) -> None:
    """Forget the person: state, history, signals; keep only the fact that the id is erased."""
    for table in ("lead_stages", "transitions", "lead_signals"):
        await conn.execute(f"DELETE FROM {table} WHERE lead_id = $1", lead_id)  # noqa: S608
    await conn.execute(
        "INSERT INTO erased_leads (lead_id, erased_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        lead_id,
        erased_at,
    )


async def due_leads(conn: asyncpg.Connection, now: datetime, limit: int) -> list[UUID]:
    """Leads whose stall timer is due, locked; other workers skip them (SKIP LOCKED)."""
    rows = await conn.fetch(
        """SELECT lead_id FROM lead_stages WHERE timer_due_at <= $1
           ORDER BY timer_due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [r["lead_id"] for r in rows]


async def journey(conn: asyncpg.Connection, lead_id: UUID) -> dict[str, Any] | None:
    current = await conn.fetchrow(
        """SELECT funnel_id, funnel_version, stage, entered_at, score, fit_score,
                  engagement_score, temperature, timer_due_at
           FROM lead_stages WHERE lead_id = $1""",
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
    return {
        "lead_id": str(lead_id),
        "funnel_id": current["funnel_id"],
        "funnel_version": current["funnel_version"],
        "current_stage": current["stage"],
        "entered_at": current["entered_at"],
        "score": current["score"],
        "fit_score": current["fit_score"],
        "engagement_score": current["engagement_score"],
        "temperature": current["temperature"],
        "timer_due_at": current["timer_due_at"],
        "transitions": [dict(r) for r in rows],
    }
