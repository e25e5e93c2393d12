"""Reconciliation after load (and after each fault): every accepted lead and event, exactly once.

Three kinds of check, each a (name, expected, actual) row:
- the wire against the consumers: every decodable event on a topic a service consumes, of a
  type it handles, is in that service's inbox exactly once (the inbox key is (source, id)),
  except the records that service dead-lettered; nothing else is there;
- the ledger against every service: leads, submissions and activities in intake; captures,
  updates, activities and clicks on the topics; one current stage per lead in the tracker, the
  stage the journey predicts; contacts and one sent welcome per lead in the notifier; lead
  states, the snapshot, the conversion steps and the revenue in reporting;
- the mailbox: one message per welcome touch, no Message-ID twice (no touch sent twice);
- the dead-letter topics: exactly the records the caller injected as poison, once per
  consumer group that reads their topic, each with its reason header.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.soak_traffic import FUNNEL_ID, STAGE_AFTER_STEPS, Ledger
from funnel_contracts import DecodeError, decode
from funnel_contracts.topics import ALL_TOPICS, all_topics_with_dead_letters, dead_letter_topic
from funnel_devstack.mailbox import read_messages
from funnel_devstack.stack import Stack
from notifier.touches.consumer import HANDLED as NOTIFIER_HANDLED
from reporting.projection.consumer import HANDLED as REPORTING_HANDLED
from stage_tracker.moves.consumer import HANDLED as TRACKER_HANDLED
from stage_tracker.moves.consumer import TOPICS as TRACKER_TOPICS

SCHEMAS = ("intake", "tracker", "notifier", "reporting")
# consumer group -> (its schema, the topics it reads, the event types it handles)
CONSUMERS: dict[str, tuple[str, tuple[str, ...], frozenset[str]]] = {
    "stage-tracker": ("tracker", tuple(TRACKER_TOPICS), frozenset(TRACKER_HANDLED)),
    "notifier": (
        "notifier",
        ("funnel.lead-events", "funnel.activity-events", "funnel.stage-events"),
        frozenset(NOTIFIER_HANDLED),
    ),
    "reporting": ("reporting", tuple(ALL_TOPICS), frozenset(REPORTING_HANDLED)),
}


@dataclass(frozen=True)
class WireRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class WireEvent:
    topic: str
    type: str
    source: str
    id: str
    subject: str
    data: dict[str, Any]


@dataclass
class Wire:
    """Every record of the funnel topics and their dead-letter topics, read from the start."""

    records: list[WireRecord] = field(default_factory=list)
    events: dict[tuple[str, str], WireEvent] = field(default_factory=dict)  # (source, id)
    copies: Counter[tuple[str, str]] = field(default_factory=Counter)
    undecodable: list[WireRecord] = field(default_factory=list)
    dead_letters: list[WireRecord] = field(default_factory=list)
    by_position: dict[tuple[str, int, int], tuple[str, str]] = field(default_factory=dict)

    def of_kind(self, kind: str, subjects: set[str] | None = None) -> list[WireEvent]:
        """Events of a kind in any version (`funnel.lead.captured` is .v1 and .v2)."""
        return [
            e
            for e in self.events.values()
            if e.type.rsplit(".", 1)[0] == kind and (subjects is None or e.subject in subjects)
        ]


@dataclass
class Check:
    name: str
    expected: Any
    actual: Any
    detail: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.expected == self.actual)


@dataclass
class Reconciliation:
    checks: list[Check]
    quiet_after_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def lines(self) -> list[str]:
        out = []
        for c in self.checks:
            mark = "ok  " if c.ok else "FAIL"
            shown = f"{c.actual}" if c.ok else f"expected {c.expected}, found {c.actual}"
            out.append(f"  {mark} {c.name}: {shown}{(' - ' + c.detail) if c.detail else ''}")
        return out


@dataclass(frozen=True)
class Poison:
    """A record the caller produced as poison: where it went and which groups must reject it."""

    name: str
    topic: str
    partition: int
    offset: int
    groups: frozenset[str]


# -- waiting until the pipeline has nothing left in flight ---------------------------------


async def _group_lag(admin: AIOKafkaAdminClient, ends: dict[TopicPartition, int]) -> int:
    lag = 0
    for group, (_, topics, _) in CONSUMERS.items():
        committed = await admin.list_consumer_group_offsets(group)
        for tp, end in ends.items():
            if tp.topic in topics:
                meta = committed.get(tp)
                lag += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
    return lag


async def _end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of `topics`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


def _event_topics() -> list[str]:
    """Every topic a consumer may read (a service's own command topics included)."""
    return [t for t in all_topics_with_dead_letters() if not t.endswith(".dlq")]


async def pipeline_backlog(stack: Stack) -> dict[str, int]:
    """What is still in flight: outbox rows, consumer lag, touches due but not sent."""
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        backlog = {
            f"{schema} outbox": int(await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox"))  # noqa: S608 (fixed names)
            for schema in SCHEMAS
        }
        # Due now, being sent, or waiting for another try (a refused email): all in flight.
        backlog["touches due or retrying"] = int(
            await conn.fetchval(
                "SELECT count(*) FROM notifier.touches WHERE status = 'sending'"
                " OR (status = 'scheduled' AND (due_at <= now() OR attempts > 0))"
            )
        )
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        ends = await _end_offsets(stack.kafka_bootstrap, _event_topics())
        backlog["consumer lag"] = await _group_lag(admin, ends)
    finally:
        await admin.close()
    return backlog


async def wait_quiet(stack: Stack, timeout: float = 240) -> float:
    """Wait until nothing is in flight twice in a row; return the seconds it took."""
    started = time.monotonic()
    quiet_once = False
    last: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        try:
            last = await pipeline_backlog(stack)
        except Exception as exc:  # a part still coming back: not quiet yet
            last = {f"unreachable ({type(exc).__name__})": 1}
        if not any(last.values()):
            if quiet_once:
                return time.monotonic() - started
            quiet_once = True
        else:
            quiet_once = False
        await asyncio.sleep(1.0)
    raise TimeoutError(f"the pipeline did not settle within {timeout:.0f}s: {last}")


# -- reading the topics ---------------------------------------------------------------------


async def read_wire(bootstrap: str) -> Wire:
    """Every record of every funnel topic and dead-letter topic, up to the current ends."""
    ends = await _end_offsets(bootstrap, all_topics_with_dead_letters())
    wire = Wire()
    wanted = {tp: end for tp, end in ends.items() if end > 0}
    if not wanted:
        return wire
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        await consumer.seek_to_beginning(*wanted)
        done: set[TopicPartition] = set()
        deadline = time.monotonic() + 120
        while len(done) < len(wanted) and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).items():
                for r in records:
                    if r.offset >= wanted[tp]:
                        continue
                    _add(wire, WireRecord(r.topic, r.partition, r.offset, r.key, r.value,
                                          tuple(r.headers or ())))  # fmt: skip
                if await consumer.position(tp) >= wanted[tp]:
                    done.add(tp)
        if len(done) < len(wanted):
            raise TimeoutError("could not read the topics to their ends")
    finally:
        await consumer.stop()
    return wire


def _add(wire: Wire, record: WireRecord) -> None:
    wire.records.append(record)
    if record.topic.endswith(".dlq"):
        wire.dead_letters.append(record)
        return
    try:
        envelope = decode(record.key, record.value, list(record.headers))
    except DecodeError:
        wire.undecodable.append(record)
        return
    ident = (envelope.source, envelope.id)
    wire.copies[ident] += 1
    wire.by_position[(record.topic, record.partition, record.offset)] = ident
    wire.events.setdefault(
        ident,
        WireEvent(record.topic, envelope.type, envelope.source, envelope.id,
                  envelope.subject, envelope.data),
    )  # fmt: skip


def _header(record: WireRecord, name: str) -> str:
    return next((v.decode() for k, v in record.headers if k == name), "")


# -- the checks -----------------------------------------------------------------------------


def _diff(expected: set[Any], actual: set[Any]) -> str:
    missing, extra = expected - actual, actual - expected
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} e.g. {sorted(map(str, missing))[:3]}")
    if extra:
        parts.append(f"extra {len(extra)} e.g. {sorted(map(str, extra))[:3]}")
    return "; ".join(parts)


def _set_check(name: str, expected: set[Any], actual: set[Any]) -> Check:
    return Check(name, len(expected), len(actual) if actual == expected else -1,
                 _diff(expected, actual))  # fmt: skip


def dead_letter_checks(wire: Wire, poison: list[Poison]) -> list[Check]:
    """The DLQs hold exactly the injected poison, once per group that reads its topic."""
    expected = {(p.topic, p.partition, p.offset, g) for p in poison for g in p.groups}
    found: Counter[tuple[str, int, int, str]] = Counter()
    reasons: dict[tuple[str, int, int, str], str] = {}
    for r in wire.dead_letters:
        where = (
            _header(r, "dlq_topic"),
            int(_header(r, "dlq_partition") or -1),
            int(_header(r, "dlq_offset") or -1),
            _header(r, "dlq_consumer_group"),
        )
        found[where] += 1
        reasons[where] = _header(r, "dlq_error")
        if r.topic != dead_letter_topic(where[0]):
            found[("wrong dead-letter topic", r.partition, r.offset, r.topic)] += 1
    checks = [
        _set_check("dead letters are exactly the poison, per group", expected, set(found)),
        Check("no dead letter twice", 0, sum(n - 1 for n in found.values())),
        Check(
            "every dead letter says why (dlq_error)",
            0,
            sum(1 for w in found if not reasons.get(w)),
        ),
    ]
    for p in poison:
        why = sorted({reasons.get((p.topic, p.partition, p.offset, g), "-")[:60] for g in p.groups})
        hits = sum(1 for g in p.groups if (p.topic, p.partition, p.offset, g) in found)
        checks.append(Check(f"poison '{p.name}' dead-lettered by {sorted(p.groups)}",
                            len(p.groups), hits, "; ".join(why)))  # fmt: skip
    return checks


async def inbox_checks(conn: asyncpg.Connection, wire: Wire) -> list[Check]:
    """Each consumer holds every event it should, once: the wire against its inbox."""
    checks = []
    dead: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in wire.dead_letters:
        position = (_header(r, "dlq_topic"), int(_header(r, "dlq_partition") or -1),
                    int(_header(r, "dlq_offset") or -1))  # fmt: skip
        if position in wire.by_position:
            dead[_header(r, "dlq_consumer_group")].add(wire.by_position[position])
    for group, (schema, topics, handled) in CONSUMERS.items():
        expected = {
            ident
            for ident, e in wire.events.items()
            if e.topic in topics and e.type in handled and ident not in dead[group]
        }
        rows = await conn.fetch(f"SELECT source, event_id FROM {schema}.inbox")  # noqa: S608
        actual = {(r["source"], r["event_id"]) for r in rows}
        checks.append(_set_check(f"{group}: inbox = events on its topics, once", expected, actual))
    return checks


async def _of_leads(conn: asyncpg.Connection, query: str, lead_ids: set[str]) -> list[Any]:
    """Rows of `query`, whose $1 is the ledger's lead ids."""
    return list(await conn.fetch(query, list(lead_ids)))


async def ledger_checks(
    conn: asyncpg.Connection,
    wire: Wire,
    ledger: Ledger,
    mail_dir: Path,
    repeats_allowed: set[str] | None = None,
) -> list[Check]:
    """What the traffic was told against what every service holds."""
    leads = ledger.leads
    ids = set(leads)

    async def column(query: str) -> set[str]:
        return {str(r[0]) for r in await _of_leads(conn, query, ids)}

    checks = [
        _set_check("intake: leads", ids, await column(
            "SELECT id FROM intake.leads WHERE id = ANY($1::uuid[])")),
        _set_check("intake: submissions", ledger.submissions, await column(
            "SELECT id FROM intake.submissions WHERE lead_id = ANY($1::uuid[])")),
        _set_check("intake: activities", ledger.activity_ids, await column(
            "SELECT id FROM intake.activities WHERE lead_id = ANY($1::uuid[])")),
    ]  # fmt: skip

    captured = wire.of_kind("funnel.lead.captured", ids)
    updates = wire.of_kind("funnel.lead.updated", ids)
    recorded = wire.of_kind("funnel.activity.recorded", ids)
    clicks = wire.of_kind("funnel.touch.clicked", ids)
    stage_events = wire.of_kind("funnel.stage.changed", ids)
    checks += [
        _set_check("topic: a capture per lead", ids, {e.subject for e in captured}),
        Check("topic: captures", len(ids), len(captured)),
        Check("topic: updates (a known person posted again)",
              len(ledger.submissions) - len(ids), len(updates)),
        _set_check("topic: activities", ledger.activity_ids,
                   {str(e.data["activity_id"]) for e in recorded}),
        Check("topic: clicks (the first per touch)", len(ledger.clicked_links), len(clicks)),
    ]  # fmt: skip

    stages = {
        str(r["lead_id"]): r["stage"]
        for r in await _of_leads(
            conn, "SELECT lead_id, stage FROM tracker.lead_stages WHERE lead_id = ANY($1::uuid[])",
            ids)
    }  # fmt: skip
    behind = {i: s for i, s in stages.items() if s != STAGE_AFTER_STEPS[leads[i].steps_done]}
    # Decision 0008: after an outage the tracker may meet a lead's click (touch topic) before
    # older activities (activity topic). Since the late-forward-move fix this should not leave a
    # lead behind its journey; such leads are still counted apart (and shown in the fault table)
    # rather than failing, so a regression shows as a number; any other difference fails.
    clicked_first = await column(
        "SELECT DISTINCT lead_id FROM tracker.transitions WHERE lead_id = ANY($1::uuid[])"
        " AND cause_event_type LIKE 'funnel.touch.clicked.%'"
    )
    unexplained = {i: s for i, s in behind.items() if i not in clicked_first}
    moves = await _of_leads(
        conn, "SELECT count(*) FROM tracker.transitions WHERE lead_id = ANY($1::uuid[])", ids
    )
    checks += [
        _set_check("tracker: one current stage per lead", ids, set(stages)),
        Check("tracker: leads not in their journey's stage, but for decision 0008", 0,
              len(unexplained), str(list(unexplained.items())[:3]) if unexplained else ""),
        Check("tracker: moves = stage events on the topic", len(stage_events), moves[0][0]),
    ]  # fmt: skip
    ledger.behind_journey = len(behind)

    welcome = {
        str(r["lead_id"]): r
        for r in await _of_leads(
            conn, "SELECT lead_id, status, message_id FROM notifier.touches"
            " WHERE playbook = 'welcome' AND lead_id = ANY($1::uuid[])", ids)
    }  # fmt: skip
    sent = await column(
        "SELECT id FROM notifier.touches WHERE status = 'sent' AND lead_id = ANY($1::uuid[])"
    )
    touch_sent = {str(e.data["touch_id"]) for e in wire.of_kind("funnel.touch.sent", ids)}
    checks += [
        _set_check("notifier: contacts", ids, await column(
            "SELECT lead_id FROM notifier.contacts WHERE lead_id = ANY($1::uuid[])")),
        _set_check("notifier: one welcome per lead", ids, set(welcome)),
        Check("notifier: welcomes not sent", 0,
              sum(1 for r in welcome.values() if r["status"] != "sent")),
        _set_check("topic: one touch.sent per sent touch", sent, touch_sent),
        _set_check("reporting: lead states", ids, await column(
            "SELECT lead_id FROM reporting.lead_states WHERE lead_id = ANY($1::uuid[])")),
    ]  # fmt: skip

    emails = {p.email for p in leads.values()}
    by_id = Counter(
        str(m["Message-ID"]) for m in read_messages(mail_dir) if str(m["To"]).lower() in emails
    )
    twice = sorted(k for k, n in by_id.items() if n > 1 and k not in (repeats_allowed or ()))
    checks += [
        Check("mailbox: one email per welcome", len(ids), len(by_id)),
        Check("mailbox: no touch sent twice (same Message-ID)", 0, len(twice), str(twice[:3])),
        _set_check("mailbox: Message-IDs = the welcome touches",
                   {r["message_id"] for r in welcome.values()}, set(by_id)),
    ]  # fmt: skip
    return checks


async def tracker_current(conn: asyncpg.Connection, ledger: Ledger) -> Counter[str]:
    """Leads in each stage now, by the tracker."""
    rows = await _of_leads(
        conn,
        "SELECT stage, count(*) AS n FROM tracker.lead_stages"
        " WHERE lead_id = ANY($1::uuid[]) GROUP BY stage",
        set(ledger.leads),
    )
    return Counter({r["stage"]: int(r["n"]) for r in rows})


async def tracker_entries(conn: asyncpg.Connection, ledger: Ledger) -> Counter[str]:
    """Leads that entered each stage, by the tracker's own history."""
    rows = await _of_leads(
        conn,
        "SELECT to_stage, count(DISTINCT lead_id) AS n FROM tracker.transitions"
        " WHERE lead_id = ANY($1::uuid[]) GROUP BY to_stage",
        set(ledger.leads),
    )
    return Counter({r["to_stage"]: int(r["n"]) for r in rows})


async def report_checks(
    stack: Stack, ledger: Ledger, current: Counter[str], entered: Counter[str]
) -> tuple[list[Check], list[str]]:
    """The report API on a stack whose only traffic was this ledger's."""
    auth = {"Authorization": f"Bearer {stack.admin_api_key}"}
    async with httpx.AsyncClient(base_url=stack.url("reporting"), headers=auth, timeout=30) as c:
        snapshot = (await c.get(f"/v1/funnels/{FUNNEL_ID}/snapshot")).json()
        conversion = (await c.get(f"/v1/funnels/{FUNNEL_ID}/conversion")).json()
        revenue = (await c.get(f"/v1/funnels/{FUNNEL_ID}/revenue")).json()
    now = {s["stage"]: s["leads"] for s in snapshot["stages"] if s["leads"]}
    steps = {s["stage"]: s["leads"] for s in conversion["groups"][0]["steps"] if s["leads"]}
    eur = [s for s in revenue["segments"] if s["currency"] == "EUR"]
    checks = [
        Check("report: snapshot total", len(ledger.leads), snapshot["total"]),
        Check("report: leads per stage now = the tracker's", dict(current), now),
        Check("report: conversion = the tracker's history", dict(entered), steps),
        Check("report: orders", len(ledger.orders), sum(s["orders"] for s in eur)),
        Check("report: revenue EUR", ledger.revenue(),
              sum((Decimal(s["revenue"]) for s in eur), Decimal(0))),
    ]  # fmt: skip
    journeys = ledger.entered_counts()
    skipped = {k: journeys[k] - entered[k] for k in journeys if journeys[k] != entered[k]}
    notes = []
    if ledger.behind_journey:
        notes.append(f"leads whose stage is behind their journey: {ledger.behind_journey}")
    if skipped:
        # Decision 0008: an event met after a later one of the same lead on another topic (a
        # click before the purchase, after an outage). Expected empty since late events may
        # move a lead forward; shown, not failed, so a regression is visible in the table.
        notes.append(f"stage entries the journeys made but the tracker's history lacks: {skipped}")
    return checks, notes


async def reconcile(
    stack: Stack,
    ledger: Ledger,
    *,
    poison: list[Poison] | None = None,
    fresh: bool = True,
    quiet_timeout: float = 240,
    repeats_allowed: set[str] | None = None,
) -> Reconciliation:
    """Wait for the pipeline to settle, then run every check.

    `repeats_allowed`: Message-IDs a fault test saw handed over twice for a reason it proved
    (a sender killed between the SMTP server's answer and the record).
    """
    quiet_after = await wait_quiet(stack, quiet_timeout)
    wire = await read_wire(stack.kafka_bootstrap)
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        checks = await inbox_checks(conn, wire)
        checks += await ledger_checks(conn, wire, ledger, stack.mail_dir, repeats_allowed)
        current = await tracker_current(conn, ledger)
        entered = await tracker_entries(conn, ledger)
    finally:
        await conn.close()
    notes: list[str] = []
    if fresh:
        report, notes = await report_checks(stack, ledger, current, entered)
        checks += report
    checks += dead_letter_checks(wire, poison or [])
    checks.append(Check("wire: records that are not events (must be injected poison)",
                        sum(1 for p in poison or [] if (p.topic, p.partition, p.offset) not in
                            wire.by_position), len(wire.undecodable)))  # fmt: skip
    repeats = sum(n - 1 for n in wire.copies.values())
    notes += [
        f"{len(wire.records)} records on the topics, {len(wire.events)} distinct events,"
        f" {repeats} extra copies of an event on the wire (relay repeats or injected;"
        " the inboxes absorb them)"
    ]
    return Reconciliation(checks, quiet_after, notes)
