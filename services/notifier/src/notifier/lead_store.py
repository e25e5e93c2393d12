"""What the notifier knows of each person: contact, consent per category, stage, activities."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg

from notifier.send_rules import LeadFacts


async def upsert_contact(
    conn: asyncpg.Connection,
    lead_id: UUID,
    *,
    email: str | None,
    first_name: str | None,
    locale: str | None,
    time_zone: str | None,
) -> None:
    """Insert or update; a missing value in an update keeps the known one."""
    await conn.execute(
        """INSERT INTO contacts (lead_id, email, first_name, locale, time_zone)
           VALUES ($1, coalesce($2, ''), $3, $4, $5)
           ON CONFLICT (lead_id) DO UPDATE SET
               email = coalesce($2, contacts.email),
               first_name = coalesce($3, contacts.first_name),
               locale = coalesce($4, contacts.locale),
               time_zone = coalesce($5, contacts.time_zone),
               updated_at = now()""",
        lead_id,
        email,
        first_name,
        locale,
        time_zone,
    )


async def set_consents(
    conn: asyncpg.Connection,
    lead_id: UUID,
    categories: Iterable[str],
    *,
    granted: bool,
    source: str,
    at: datetime,
) -> list[str]:
    """Record consent per category; returns the categories whose value changed."""
    changed: list[str] = []
    for category in categories:
        row = await conn.fetchval(
            """INSERT INTO consents (lead_id, category, granted, source, changed_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (lead_id, category) DO UPDATE SET granted = excluded.granted,
                   source = excluded.source, changed_at = excluded.changed_at
               WHERE consents.granted IS DISTINCT FROM excluded.granted
               RETURNING true""",
            lead_id,
            category,
            granted,
            source,
            at,
        )
        if row:
            changed.append(category)
    return changed


async def enter_stage(
    conn: asyncpg.Connection, lead_id: UUID, funnel_id: str, stage: str, at: datetime
) -> bool:
    """Record the lead's stage unless a later move is already known (out-of-order safe)."""
    moved = await conn.fetchval(
        """INSERT INTO lead_state (lead_id, funnel_id, stage, stage_changed_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (lead_id) DO UPDATE SET funnel_id = $2, stage = $3, stage_changed_at = $4
           WHERE lead_state.stage_changed_at IS NULL OR lead_state.stage_changed_at <= $4
           RETURNING true""",
        lead_id,
        funnel_id,
        stage,
        at,
    )
    return bool(moved)


async def set_temperature(
    conn: asyncpg.Connection, lead_id: UUID, temperature: str, score: float, at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO lead_state (lead_id, temperature, score, scored_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (lead_id) DO UPDATE SET temperature = $2, score = $3, scored_at = $4
           WHERE lead_state.scored_at IS NULL OR lead_state.scored_at <= $4""",
        lead_id,
        temperature,
        score,
        at,
    )


async def temperature(conn: asyncpg.Connection, lead_id: UUID) -> str | None:
    known: str | None = await conn.fetchval(
        "SELECT temperature FROM lead_state WHERE lead_id = $1", lead_id
    )
    return known


async def current_stage(conn: asyncpg.Connection, lead_id: UUID) -> tuple[str | None, str | None]:
    row = await conn.fetchrow("SELECT funnel_id, stage FROM lead_state WHERE lead_id = $1", lead_id)
    return (row["funnel_id"], row["stage"]) if row else (None, None)


async def record_activity(
    conn: asyncpg.Connection, lead_id: UUID, activity_type: str, at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO lead_activities (lead_id, activity_type, last_at) VALUES ($1, $2, $3)
           ON CONFLICT (lead_id, activity_type)
           DO UPDATE SET last_at = greatest(lead_activities.last_at, $3)""",
        lead_id,
        activity_type,
        at,
    )


async def erase(conn: asyncpg.Connection, lead_id: UUID) -> None:
    """Remove the person: contact details, consent records, state, activities, tasks."""
    for table in ("contacts", "consents", "lead_state", "lead_activities", "tasks"):
        await conn.execute(f"DELETE FROM {table} WHERE lead_id = $1", lead_id)  # noqa: S608
    await conn.execute(
        "INSERT INTO erased_leads (lead_id) VALUES ($1) ON CONFLICT DO NOTHING", lead_id
    )


async def is_erased(conn: asyncpg.Connection, lead_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM erased_leads WHERE lead_id = $1", lead_id))


@dataclass(frozen=True)
class Contact:
    email: str
    first_name: str | None
    locale: str | None
    time_zone: str | None


@dataclass
class Snapshot:
    """What the send-time rules look at for a batch of leads, read in the claiming
    transaction after the leads are locked; sends decided in the batch are added as they go."""

    now: datetime
    contacts: dict[UUID, Contact] = field(default_factory=dict)
    stages: dict[UUID, str | None] = field(default_factory=dict)
    consents: dict[UUID, dict[str, bool]] = field(default_factory=dict)
    activities: dict[UUID, dict[str, datetime]] = field(default_factory=dict)
    # Marketing touches sent or in flight: (lead, channel) -> [(playbook, touch id, when)]
    sends: dict[tuple[UUID, str], list[tuple[str, UUID, datetime]]] = field(default_factory=dict)

    def facts(self, lead_id: UUID, channel: str, playbook: str, touch_id: UUID) -> LeadFacts:
        contact = self.contacts.get(lead_id)
        sends = [s for s in self.sends.get((lead_id, channel), []) if s[1] != touch_id]
        return LeadFacts(
            reachable=contact is not None and bool(contact.email),
            stage=self.stages.get(lead_id),
            consents=self.consents.get(lead_id, {}),
            last_activity=self.activities.get(lead_id, {}),
            time_zone=contact.time_zone if contact else None,
            recent_sends=tuple(at for _, _, at in sends),
            recent_playbook_sends=tuple(at for book, _, at in sends if book == playbook),
        )

    def add_send(self, lead_id: UUID, channel: str, playbook: str, touch_id: UUID) -> None:
        self.sends.setdefault((lead_id, channel), []).append((playbook, touch_id, self.now))


async def snapshot(
    conn: asyncpg.Connection, lead_ids: list[UUID], *, now: datetime, window_start: datetime
) -> Snapshot:
    """Five set-based reads for the whole batch (not five per touch)."""
    snap = Snapshot(now=now)
    for r in await conn.fetch(
        "SELECT lead_id, email, first_name, locale, time_zone FROM contacts"
        " WHERE lead_id = ANY($1::uuid[])",
        lead_ids,
    ):
        snap.contacts[r["lead_id"]] = Contact(
            r["email"], r["first_name"], r["locale"], r["time_zone"]
        )
    for r in await conn.fetch(
        "SELECT lead_id, stage FROM lead_state WHERE lead_id = ANY($1::uuid[])", lead_ids
    ):
        snap.stages[r["lead_id"]] = r["stage"]
    for r in await conn.fetch(
        "SELECT lead_id, category, granted FROM consents WHERE lead_id = ANY($1::uuid[])",
        lead_ids,
    ):
        snap.consents.setdefault(r["lead_id"], {})[r["category"]] = r["granted"]
    for r in await conn.fetch(
        "SELECT lead_id, activity_type, last_at FROM lead_activities"
        " WHERE lead_id = ANY($1::uuid[])",
        lead_ids,
    ):
        snap.activities.setdefault(r["lead_id"], {})[r["activity_type"]] = r["last_at"]
    for r in await conn.fetch(
        """SELECT lead_id, channel, playbook, id, coalesce(sent_at, now()) AS at FROM touches
           WHERE lead_id = ANY($1::uuid[]) AND kind = 'marketing'
             AND ((status = 'sent' AND sent_at > $2) OR status = 'sending')""",
        lead_ids,
        window_start,
    ):
        key = (r["lead_id"], r["channel"])
        snap.sends.setdefault(key, []).append((r["playbook"], r["id"], r["at"]))
    return snap
