"""The durable touch schedule: schedule, cancel, claim due touches, record outcomes; and the
batch snapshot of what the send-time rules look at."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from funnel_servicekit.db import wrote_a_row
from notifier.people.models import Contact
from notifier.playbooks.models import TouchPlan
from notifier.touches.models.due import DueTouch
from notifier.touches.models.snapshot import Snapshot

# Touches waiting to be sent; only these can be cancelled or deferred.
PENDING = ("scheduled",)


@dataclass(frozen=True)
class Planned:
    """An event's touches to write: whose, the event that caused them (its id), the trace
    context they carry, and the ids they get (made here, to tell which were written)."""

    lead_id: UUID
    plans: list[TouchPlan]
    cause_event_id: str
    trace_context: Mapping[str, str]
    ids: list[UUID] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", [uuid4() for _ in self.plans])

    def written(self, inserted: set[UUID]) -> list[bool]:
        """For each plan, whether its touch was written."""
        return [touch_id in inserted for touch_id in self.ids]


# The touches of events' plans, as INSERT ... SELECT rows: $1..$17 as `_plan_args` makes
# them, one row per plan, in order. Written in order; a plan a playbook already made for
# its lead and cause writes nothing. A stale plan is recorded at once as 'skipped' (reason
# 'stale'): never due, never sent.
_INSERT_PLANNED = """INSERT INTO touches (id, lead_id, playbook, channel, template, funnel_id,
        stage, cause_event_id, due_at, first_due_at, dedupe_key, kind, category,
        requires_stage, cancel_on, triggered_at, trace_context, status, reason)
    SELECT p.id, p.lead_id, p.playbook, p.channel, p.template, p.funnel_id, p.stage,
           p.cause_event_id, p.due_at, p.due_at, p.dedupe_key, p.kind, p.category,
           p.requires_stage, ARRAY(SELECT jsonb_array_elements_text(p.cancel_on::jsonb)),
           p.triggered_at, p.trace_context::jsonb,
           CASE WHEN p.stale THEN 'skipped' ELSE 'scheduled' END,
           CASE WHEN p.stale THEN 'stale' END
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[],
                $12::text[], $13::text[], $14::text[], $15::text[], $16::timestamptz[],
                $17::bool[])
        WITH ORDINALITY AS p (id, lead_id, cause_event_id, trace_context, playbook, channel,
            template, funnel_id, stage, due_at, dedupe_key, kind, category, requires_stage,
            cancel_on, triggered_at, stale, n)
    {where}
    ORDER BY p.n
    ON CONFLICT (lead_id, playbook, dedupe_key) DO NOTHING RETURNING id"""


def _plan_args(planned: Sequence[Planned]) -> tuple[Any, ...]:
    """$1..$17 of _INSERT_PLANNED: a column each, a row per plan."""
    rows = [
        (touch_id, p.lead_id, p.cause_event_id, trace, plan)
        for p in planned
        for trace in (json.dumps(dict(p.trace_context)),)
        for touch_id, plan in zip(p.ids, p.plans, strict=True)
    ]
    plans = [plan for *_, plan in rows]
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [p.playbook for p in plans],
        [p.channel for p in plans],
        [p.template for p in plans],
        [p.funnel_id for p in plans],
        [p.stage for p in plans],
        [p.due_at for p in plans],
        [p.dedupe_key for p in plans],
        [p.kind for p in plans],
        [p.category for p in plans],
        [p.requires_stage for p in plans],
        [json.dumps(list(p.cancel_on)) for p in plans],
        [p.triggered_at for p in plans],
        [p.stale for p in plans],
    )


_SCHEDULE = _INSERT_PLANNED.format(where="")


async def schedule(conn: asyncpg.Connection, planned: Sequence[Planned]) -> list[list[bool]]:
    """Events' touches in one statement; for each event, for each of its plans, whether it
    was scheduled (False: its playbook already touched the lead for this cause)."""
    if not any(p.plans for p in planned):
        return [[] for _ in planned]
    rows = await conn.fetch(_SCHEDULE, *_plan_args(planned))
    inserted = {row["id"] for row in rows}
    return [p.written(inserted) for p in planned]


@dataclass(frozen=True)
class Move:
    """A lead's stage change: into `stage` of `funnel_id`, at `at`."""

    lead_id: UUID
    funnel_id: str
    stage: str
    at: datetime


# Each lead's ($18) stage recorded (funnel $19, stage $20, at $21) unless a later move is
# known, and for the leads whose stage was: the touches needing another stage cancelled and
# the new stage's touches written ($1..$17 as in _INSERT_PLANNED). One move per lead.
_MOVED = """WITH moved AS (
        INSERT INTO lead_state (lead_id, funnel_id, stage, stage_changed_at)
        SELECT * FROM unnest($18::uuid[], $19::text[], $20::text[], $21::timestamptz[])
        ON CONFLICT (lead_id) DO UPDATE
            SET funnel_id = excluded.funnel_id, stage = excluded.stage,
                stage_changed_at = excluded.stage_changed_at
        WHERE lead_state.stage_changed_at IS NULL
            OR lead_state.stage_changed_at <= excluded.stage_changed_at
        RETURNING lead_id, stage),
    left_stage AS (
        UPDATE touches t SET status = 'cancelled', reason = 'left stage ' || t.requires_stage
        WHERE t.lead_id = ANY($18::uuid[]) AND t.status = 'scheduled'
          AND t.requires_stage IS NOT NULL
          AND t.requires_stage <> (SELECT m.stage FROM moved m WHERE m.lead_id = t.lead_id))"""
_ENTER_STAGES = (  # constant text: this module's fragments only
    _MOVED  # noqa: S608
    + """,
    planned AS ("""
    + _INSERT_PLANNED.format(where="WHERE p.lead_id IN (SELECT lead_id FROM moved)")
    + """)
    SELECT ARRAY(SELECT lead_id FROM moved) AS moved, ARRAY(SELECT id FROM planned) AS written"""
)


async def enter_stages(
    conn: asyncpg.Connection, moves: Sequence[Move], planned: Sequence[Planned]
) -> tuple[set[UUID], list[list[bool]]]:
    """Record each lead's stage unless a later move is already known (out-of-order safe)
    and, for each lead whose stage was recorded, cancel the touches that need another stage
    and schedule its `planned` touches (as `schedule`): one statement for any number of
    leads, each moved once (`planned` may leave some out). The leads whose stage was
    recorded, and for each of `planned`, for each plan, whether it was scheduled (none is
    when its lead's stage was not)."""
    assert len({m.lead_id for m in moves}) == len(moves), "one move per lead"
    row = await conn.fetchrow(
        _ENTER_STAGES,
        *_plan_args(planned),
        [m.lead_id for m in moves],
        [m.funnel_id for m in moves],
        [m.stage for m in moves],
        [m.at for m in moves],
    )
    assert row is not None
    inserted = set(row["written"])
    return set(row["moved"]), [p.written(inserted) for p in planned]


@dataclass(frozen=True)
class Activity:
    """A lead's activity of `activity_type` at `at`."""

    lead_id: UUID
    activity_type: str
    at: datetime


async def record_activities(
    conn: asyncpg.Connection, activities: Sequence[Activity]
) -> dict[UUID, tuple[str | None, str | None]]:
    """Activities, one per lead, in one statement: each one's last time kept, the touches it
    makes moot (the person did what they were nudging them to, e.g. bought) cancelled; and
    each lead's funnel and stage as they were before it ((None, None): not known yet)."""
    assert len({a.lead_id for a in activities}) == len(activities), "one activity per lead"
    rows = await conn.fetch(
        """WITH a AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[])
                   AS a (lead_id, activity_type, at)),
           seen AS (
               INSERT INTO lead_activities (lead_id, activity_type, last_at)
               SELECT lead_id, activity_type, at FROM a
               ON CONFLICT (lead_id, activity_type)
               DO UPDATE SET last_at = greatest(lead_activities.last_at, excluded.last_at)),
           moot AS (
               UPDATE touches t
               SET status = 'cancelled', reason = a.activity_type || ' since the trigger'
               FROM a
               WHERE t.lead_id = ANY($1::uuid[]) AND t.status = 'scheduled'
                 AND a.lead_id = t.lead_id
                 AND a.activity_type = ANY(t.cancel_on) AND t.triggered_at <= a.at)
           SELECT a.lead_id, s.funnel_id, s.stage
           FROM a LEFT JOIN LATERAL (
               SELECT funnel_id, stage FROM lead_state WHERE lead_id = a.lead_id OFFSET 0
           ) AS s ON true""",
        [a.lead_id for a in activities],
        [a.activity_type for a in activities],
        [a.at for a in activities],
    )
    return {r["lead_id"]: (r["funnel_id"], r["stage"]) for r in rows}


async def move_to(conn: asyncpg.Connection, survivor: UUID, other: UUID) -> int:
    """A merge: the other lead's waiting touches become the survivor's, but for the ones the
    survivor has already (same playbook and dedupe key), which are cancelled; the other's
    sent, failed and finished touches stay its history. Returns how many moved."""
    moved: str = await conn.execute(
        """UPDATE touches t SET lead_id = $1
           WHERE t.lead_id = $2 AND t.status = 'scheduled' AND NOT EXISTS (
               SELECT 1 FROM touches s
               WHERE s.lead_id = $1 AND s.playbook = t.playbook AND s.dedupe_key = t.dedupe_key)""",
        survivor,
        other,
    )
    await conn.execute(
        """UPDATE touches SET status = 'cancelled', reason = 'merged into ' || $1
           WHERE lead_id = $2 AND status = 'scheduled'""",
        str(survivor),
        other,
    )
    return int(moved.split()[-1])


async def cancel_category(
    conn: asyncpg.Connection, lead_id: UUID, category: str, reason: str
) -> int:
    status: str = await conn.execute(
        """UPDATE touches SET status = 'suppressed', reason = $3
           WHERE lead_id = $1 AND status = 'scheduled' AND kind = 'marketing' AND category = $2""",
        lead_id,
        category,
        reason,
    )
    return int(status.split()[-1])


async def cancel_all(conn: asyncpg.Connection, lead_id: UUID, reason: str) -> int:
    status: str = await conn.execute(
        """UPDATE touches SET status = 'cancelled', reason = $2, lease_until = NULL
           WHERE lead_id = $1 AND status IN ('scheduled', 'sending', 'failed')""",
        lead_id,
        reason,
    )
    return int(status.split()[-1])


_COLUMNS = """t.id, t.lead_id, t.playbook, t.channel, t.kind, t.category, t.template,
    t.funnel_id, t.stage, t.requires_stage, t.cancel_on, t.triggered_at, t.due_at,
    t.first_due_at, t.attempts, t.trace_context"""


def _without(row: asyncpg.Record, *names: str) -> dict[str, Any]:
    data = dict(row.items())
    for name in names:
        del data[name]
    return data


def _due(row: Mapping[str, Any]) -> DueTouch:
    data = dict(row)
    data["cancel_on"] = tuple(data["cancel_on"] or ())
    ctx = data["trace_context"]
    data["trace_context"] = json.loads(ctx) if isinstance(ctx, str) else dict(ctx or {})
    return DueTouch(**data)


@dataclass(frozen=True)
class DueBatch:
    """What one claim statement tells: the due touches it locked, when the next touch not
    among them falls due (seconds from now; None: none waits), and the playbooks' revision."""

    touches: list[DueTouch]
    next_due_in: float | None
    playbooks_revision: int


# A touch the sender can claim: a task, or a message to a person whose contact it holds.
# `OFFSET 0` keeps the probe per row (one primary-key look-up): without it PostgreSQL may
# turn the EXISTS under the OR into a hash of the whole contacts table, built on every
# claim (docs/decisions/0085).
_CLAIMABLE = """(t.channel = 'task' OR EXISTS (
    SELECT 1 FROM contacts c WHERE c.lead_id = t.lead_id OFFSET 0))"""

# The claim (see lock_due). Each part is a range of an index, so its cost follows the touches
# due, not those scheduled for later: scheduled ones due by now (the due-touch index up to
# now), sends whose lease ran out (the lease index), and the next scheduled touch after now
# (the due-touch index from now: its first claimable row). A row of one part can be locked
# and then cut by the final LIMIT: it stays locked, unclaimed, until this transaction ends.
_LOCK_DUE = f"""WITH scheduled AS (
        SELECT {_COLUMNS} FROM touches t
        WHERE t.status = 'scheduled' AND t.due_at <= now() AND {_CLAIMABLE}
        ORDER BY t.due_at LIMIT $1 FOR UPDATE OF t SKIP LOCKED),
    expired AS (
        SELECT {_COLUMNS} FROM touches t
        WHERE t.status = 'sending' AND t.lease_until < now() AND {_CLAIMABLE}
        ORDER BY t.lease_until LIMIT $1 FOR UPDATE OF t SKIP LOCKED),
    due AS (
        SELECT * FROM scheduled UNION ALL SELECT * FROM expired ORDER BY due_at LIMIT $1)
    SELECT due.*, n.next_due_in, n.revision FROM (
        SELECT (SELECT extract(epoch FROM t.due_at - now()) FROM touches t
                WHERE t.status = 'scheduled' AND t.due_at > now() AND {_CLAIMABLE}
                ORDER BY t.due_at LIMIT 1) AS next_due_in,
               (SELECT revision FROM playbooks_revision) AS revision) AS n
    LEFT JOIN due ON true"""  # noqa: S608 (fixed text)


async def lock_due(conn: asyncpg.Connection, limit: int) -> DueBatch:
    """Lock due touches (inside the caller's transaction); SKIP LOCKED shares work among
    replicas. A touch whose lease ran out (its sender died mid-send) is due again. The same
    statement tells when the next scheduled touch falls due (so the sender needs no query
    of its own to know how long to sleep) and the playbooks' revision (so it knows whether
    the playbooks it holds are still the effective ones)."""
    rows = await conn.fetch(_LOCK_DUE, limit)
    head = rows[0]
    touches = [_due(_without(r, "next_due_in", "revision")) for r in rows if r["id"] is not None]
    wait = head["next_due_in"]
    return DueBatch(
        sorted(touches, key=lambda t: (str(t.lead_id), t.due_at)),
        None if wait is None else float(wait),
        int(head["revision"]),
    )


async def next_due_in_seconds(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next touch the sender could claim (negative: overdue); None if none
    (a touch whose contact is not known yet waits for it, and its NOTIFY)."""
    wait = await conn.fetchval(
        "SELECT extract(epoch FROM t.due_at - now()) FROM touches t"  # noqa: S608 (fixed text)
        f" WHERE t.status = 'scheduled' AND {_CLAIMABLE} ORDER BY t.due_at LIMIT 1"
    )
    return None if wait is None else float(wait)


async def lock_leads(conn: asyncpg.Connection, lead_ids: list[UUID]) -> None:
    """Serialize send decisions per lead across replicas (frequency caps count right);
    locks are taken in one order everywhere, so two replicas cannot deadlock."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock(k) FROM (
               SELECT DISTINCT hashtextextended('notifier-lead:' || l::text, 0) AS k
               FROM unnest($1::uuid[]) AS l ORDER BY k) AS keys""",
        lead_ids,
    )


async def lease(conn: asyncpg.Connection, touch_ids: list[UUID], lease_seconds: float) -> None:
    await conn.execute(
        """UPDATE touches SET status = 'sending', attempts = attempts + 1,
               lease_until = now() + make_interval(secs => $2)
           WHERE id = ANY($1::uuid[])""",
        touch_ids,
        float(lease_seconds),
    )


async def defer(conn: asyncpg.Connection, touch_id: UUID, until: datetime, why: str) -> None:
    await conn.execute(
        """UPDATE touches SET status = 'scheduled', due_at = $2, reason = $3, lease_until = NULL
           WHERE id = $1""",
        touch_id,
        until,
        why,
    )


async def suppress(conn: asyncpg.Connection, touch_id: UUID, why: str) -> None:
    await conn.execute(
        """UPDATE touches SET status = 'suppressed', reason = $2, lease_until = NULL
           WHERE id = $1""",
        touch_id,
        why,
    )


_MARK_SENT = """
    UPDATE touches SET status = 'sent', sent_at = now(), message_id = $2,
        lease_until = NULL, reason = NULL
    WHERE id = $1 AND status = 'sending' RETURNING true
"""


async def mark_sent(conn: asyncpg.Connection, touch_id: UUID, message_id: str | None) -> bool:
    """Record the send once: only a touch still leased ('sending') becomes 'sent'."""
    return await wrote_a_row(conn, _MARK_SENT, touch_id, message_id)


async def mark_sent_many(
    conn: asyncpg.Connection, touch_ids: list[UUID], message_ids: list[str | None]
) -> set[UUID]:
    """`mark_sent` for a batch in one statement; returns the touches it marked (the ones
    still leased)."""
    rows = await conn.fetch(
        """UPDATE touches t SET status = 'sent', sent_at = now(), message_id = m.message_id,
               lease_until = NULL, reason = NULL
           FROM unnest($1::uuid[], $2::text[]) AS m (id, message_id)
           WHERE t.id = m.id AND t.status = 'sending' RETURNING t.id""",
        touch_ids,
        message_ids,
    )
    return {r["id"] for r in rows}


_MARK_RETRY = """
    UPDATE touches SET status = CASE WHEN $4 THEN 'failed' ELSE 'scheduled' END,
        due_at = now() + make_interval(secs => $3), last_error = $2, lease_until = NULL,
        reason = CASE WHEN $4 THEN 'delivery failed' ELSE 'retrying' END
    WHERE id = $1 AND status = 'sending' RETURNING true
"""


async def mark_retry(
    conn: asyncpg.Connection, touch_id: UUID, error: str, *, delay_s: float, give_up: bool
) -> bool:
    """Schedule another try, or fail the touch (kept for replay); True if it was leased."""
    return await wrote_a_row(conn, _MARK_RETRY, touch_id, error[:1000], float(delay_s), give_up)


_REPLAY = """
    UPDATE touches SET status = 'scheduled', due_at = now(), attempts = 0,
        reason = 'replayed', lease_until = NULL
    WHERE id = $1 AND status = 'failed' RETURNING true
"""


async def replay(conn: asyncpg.Connection, touch_id: UUID) -> bool:
    """A failed touch goes back into the schedule, due now, with its attempts reset."""
    return await wrote_a_row(conn, _REPLAY, touch_id)


async def touch_lead(conn: asyncpg.Connection, touch_id: UUID) -> UUID | None:
    lead: UUID | None = await conn.fetchval("SELECT lead_id FROM touches WHERE id = $1", touch_id)
    return lead


async def first_engagement(
    conn: asyncpg.Connection, touch_id: UUID, kind: str, url: str = ""
) -> bool:
    """True the first time this touch is opened (or this link in it clicked)."""
    fresh = await conn.fetchval(
        """INSERT INTO touch_engagements (touch_id, kind, url) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        touch_id,
        kind,
        url,
    )
    if fresh and kind == "open":
        await conn.execute(
            "UPDATE touches SET opened_at = coalesce(opened_at, now()) WHERE id = $1", touch_id
        )
    return bool(fresh)


async def touches_of(conn: asyncpg.Connection, lead_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, playbook, channel, kind, category, template, status, reason,
               triggered_at, due_at, sent_at, attempts, message_id, last_error, opened_at,
               created_at
           FROM touches WHERE lead_id = $1 ORDER BY created_at, due_at""",
        lead_id,
    )
    return [dict(r) for r in rows]


async def snapshot(
    conn: asyncpg.Connection, lead_ids: list[UUID], *, now: datetime, window_start: datetime
) -> Snapshot:
    """What the send-time rules look at for the whole batch (not per touch), in one
    statement: contacts, stages, consents, activities and recent marketing sends, one row
    each, told apart by `k`."""
    snap = Snapshot(now=now)
    rows = await conn.fetch(
        """SELECT 'c' AS k, lead_id, email AS a, first_name AS b, locale AS c, time_zone AS d,
                  NULL::timestamptz AS at, NULL::uuid AS id, NULL::bool AS granted
           FROM contacts WHERE lead_id = ANY($1::uuid[])
           UNION ALL
           SELECT 's', lead_id, stage, NULL, NULL, NULL, NULL, NULL, NULL
           FROM lead_state WHERE lead_id = ANY($1::uuid[])
           UNION ALL
           SELECT 'g', lead_id, category, NULL, NULL, NULL, NULL, NULL, granted
           FROM consents WHERE lead_id = ANY($1::uuid[])
           UNION ALL
           SELECT 'a', lead_id, activity_type, NULL, NULL, NULL, last_at, NULL, NULL
           FROM lead_activities WHERE lead_id = ANY($1::uuid[])
           UNION ALL
           SELECT 'm', lead_id, channel, playbook, NULL, NULL, coalesce(sent_at, now()), id,
                  NULL
           FROM touches
           WHERE lead_id = ANY($1::uuid[]) AND kind = 'marketing'
             AND ((status = 'sent' AND sent_at > $2) OR status = 'sending')""",
        lead_ids,
        window_start,
    )
    for r in rows:
        k, lead = r["k"], r["lead_id"]
        if k == "c":
            snap.contacts[lead] = Contact(r["a"], r["b"], r["c"], r["d"])
        elif k == "s":
            snap.stages[lead] = r["a"]
        elif k == "g":
            snap.consents.setdefault(lead, {})[r["a"]] = r["granted"]
        elif k == "a":
            snap.activities.setdefault(lead, {})[r["a"]] = r["at"]
        else:
            snap.sends.setdefault((lead, r["a"]), []).append((r["b"], r["id"], r["at"]))
    return snap
