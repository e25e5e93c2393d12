"""The touches' use cases.

From events (in the consumer's transaction, no network call): schedule the touches playbooks
call for, cancel the ones the person has outgrown, forget an erased person. For the sender:
claim due touches and decide on each (one transaction), compose what goes out, record each
outcome once (another transaction). For the API: list a lead's touches, replay a failed one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Generic, Literal, TypeVar, cast
from uuid import UUID

import asyncpg

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadMerged,
    LeadOwnerChanged,
    LeadScored,
    LeakDetected,
    LeakResolved,
    StageChanged,
    TouchFailed,
    TouchSent,
)
from funnel_servicekit.outbox import OutboxRecord, enqueue_many, outbox_record
from funnel_servicekit.telemetry import current_trace_headers
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from notifier import metrics
from notifier.channels import Failed, Outcome, Retry, Sent, WireEmail
from notifier.links import LinkSigner
from notifier.people import store as people
from notifier.people.models import Contact
from notifier.people.service import Known
from notifier.playbooks.models import Channel, Playbook, StoredPlaybook, TouchPlan, plans_for
from notifier.playbooks.models.templates import pick, render, shipped
from notifier.playbooks.service import PlaybookCache
from notifier.retry_policy import backoff_seconds
from notifier.settings import NotifierSettings
from notifier.touches import store
from notifier.touches.models.due import DueTouch
from notifier.touches.models.email_message import MailEnvelope, wire_email
from notifier.touches.models.send_rules import Defer, Policy, QuietHours, Send, decide
from notifier.wake import TOUCHES_CHANNEL, notify

# --- from events -------------------------------------------------------------------------


@dataclass
class Consuming:
    """What the event handlers share across a poll batch: the people facts and wake-ups
    (`Known`), the playbooks (from the process's cache, checked against the revision the
    facts' read brought), and the trace context the touches they schedule carry.
    `Consuming(uow)` is one event's: it asks the database as it goes and takes the current
    span's trace context."""

    uow: UnitOfWork
    known: Known = field(init=False)
    books: list[Playbook] | None = None
    trace: dict[str, str] | None = None
    #: A touch due sooner than this many seconds from now wakes the sender; a later one is
    #: found by the sender's own polls (each reads the next due time, and it polls at least
    #: this often), so its wake-up would only cost a claim that finds nothing. None: every
    #: scheduled touch wakes it.
    wake_within: float | None = None

    def __post_init__(self) -> None:
        self.known = Known(self.uow.conn)

    @classmethod
    async def load(
        cls,
        uow: UnitOfWork,
        lead_ids: Iterable[UUID],
        cache: PlaybookCache | None = None,
        *,
        wake_within: float | None = None,
    ) -> Consuming:
        batch = cls(uow, wake_within=wake_within)
        batch.known = await Known.load(uow.conn, lead_ids)
        cache = cache if cache is not None else PlaybookCache()
        batch.books = await cache.playbooks(uow.conn, batch.known.playbooks_revision)
        return batch

    async def playbooks(self) -> list[Playbook]:
        if self.books is None:
            self.books = await PlaybookCache().playbooks(self.uow.conn)
        return self.books


def _consuming(uow: UnitOfWork, batch: Consuming | None) -> Consuming:
    return batch if batch is not None else Consuming(uow)


async def forget_lead(uow: UnitOfWork, lead_id: UUID, batch: Consuming | None = None) -> None:
    """lead.erased: remove what is known of the person and cancel every waiting touch."""
    known = _consuming(uow, batch).known
    if await known.is_erased(lead_id):
        return
    await known.erase(lead_id)
    await store.cancel_all(uow.conn, lead_id, "erased")


async def forget_test_lead(uow: UnitOfWork, lead_id: UUID, batch: Consuming | None = None) -> None:
    """A test lead: no playbook touches it; what was scheduled before we knew is cancelled."""
    await _consuming(uow, batch).known.mark_test(lead_id)
    await store.cancel_all(uow.conn, lead_id, "test lead")


async def merge_leads(uow: UnitOfWork, event: LeadMerged, batch: Consuming | None = None) -> None:
    """Two leads are one person: what is known of the other and its waiting touches move to
    the survivor (duplicates dropped), so the person is touched once; the survivor is a test
    lead only when both were."""
    conn, known = uow.conn, _consuming(uow, batch).known
    survivor, other = event.lead_id, event.merged_lead_id
    if await known.is_erased(survivor) or await known.is_erased(other):
        return
    await people.fold(conn, survivor, other, survivor_waiting=survivor in known.contact_pending)
    await known.fold_test(survivor, other)
    if await store.move_to(conn, survivor, other):
        await known.wake(TOUCHES_CHANNEL)


E = TypeVar("E", bound=EventData)


@dataclass(frozen=True)
class Cause(Generic[E]):
    """An event to act on: its envelope's id (the cause its touches name) and the trace
    context they carry (None: the current span's)."""

    id: str
    event: E
    trace: Mapping[str, str] | None = None

    def trace_context(self) -> dict[str, str]:
        return dict(self.trace) if self.trace is not None else current_trace_headers()

    def to(self, event: E) -> Cause[E]:
        return Cause(self.id, event, self.trace)


async def _live(batch: Consuming, causes: Sequence[Cause[E]]) -> list[Cause[E]]:
    return [c for c in causes if not await batch.known.is_erased(c.event.lead_id)]


async def enter_stage(
    uow: UnitOfWork, cause_id: str, event: StageChanged, batch: Consuming | None = None
) -> None:
    """A stage change (see `enter_stages`)."""
    await enter_stages(uow, [Cause(cause_id, event)], batch)


async def enter_stages(
    uow: UnitOfWork, causes: Sequence[Cause[StageChanged]], batch: Consuming | None = None
) -> None:
    """Stage changes, one per lead: touches that need the old stage are cancelled; the new
    stage's are scheduled. An older move arriving late changes nothing."""
    conn, batch = uow.conn, _consuming(uow, batch)
    causes = await _live(batch, causes)
    if not causes:
        return
    # The new stage's touches depend on the event alone: planned first, then the stages
    # recorded, the touches that need another one cancelled and these written (for the
    # leads whose stage was recorded), in one statement.
    planned: list[store.Planned] = []
    for c in causes:
        plans = await _plans(batch, c, funnel_id=c.event.funnel_id, stage=c.event.to_stage)
        trace = c.trace_context() if plans else {}
        planned.append(store.Planned(c.event.lead_id, plans, c.id, trace))
    moves = [
        store.Move(c.event.lead_id, c.event.funnel_id, c.event.to_stage, c.event.changed_at)
        for c in causes
    ]
    moved, written = await store.enter_stages(conn, moves, planned)
    for c, touches, wrote in zip(causes, planned, written, strict=True):
        event = c.event
        if event.lead_id not in moved:
            continue
        if event.owner is not None:
            await people.set_owner(conn, event.lead_id, event.owner, event.changed_at)
        await _scheduled(batch, event, touches.plans, wrote)


async def record_activity(
    uow: UnitOfWork, cause_id: str, event: ActivityRecorded, batch: Consuming | None = None
) -> None:
    """An activity (see `record_activities`)."""
    await record_activities(uow, [Cause(cause_id, event)], batch)


async def record_activities(
    uow: UnitOfWork, causes: Sequence[Cause[ActivityRecorded]], batch: Consuming | None = None
) -> None:
    """Activities, one per lead: touches they cancel are cancelled; the ones they trigger
    are scheduled."""
    conn, batch = uow.conn, _consuming(uow, batch)
    causes = await _live(batch, causes)
    if not causes:
        return
    # Recorded, the touches they make moot cancelled, the stages read: one statement.
    activities = [
        store.Activity(c.event.lead_id, c.event.activity_type, c.event.occurred_at) for c in causes
    ]
    stages = await store.record_activities(conn, activities)
    await _schedule(batch, [(c, *stages[c.event.lead_id]) for c in causes])


async def record_leak(
    uow: UnitOfWork,
    cause_id: str,
    event: LeakDetected | LeakResolved,
    batch: Consuming | None = None,
) -> None:
    """Reporting found a funnel step leaking or recovering: the leak playbooks' tasks, keyed
    by the leak's id (the event's lead_id), one per event."""
    batch = _consuming(uow, batch)
    await _schedule(batch, [(Cause(cause_id, event, batch.trace), event.funnel_id, event.to_stage)])


async def record_score(
    uow: UnitOfWork, cause_id: str, event: LeadScored, batch: Consuming | None = None
) -> None:
    """A new score (see `record_scores`)."""
    await record_scores(uow, [Cause(cause_id, event)], batch)


async def record_scores(
    uow: UnitOfWork, causes: Sequence[Cause[LeadScored]], batch: Consuming | None = None
) -> None:
    """New scores, one per lead: the temperature one crosses into may call for a touch (a
    sales task)."""
    conn, batch = uow.conn, _consuming(uow, batch)
    causes = await _live(batch, causes)
    if not causes:
        return
    # The scores recorded and what was known before them read: one statement.
    before = await people.scores(
        conn,
        [
            people.NewScore(c.event.lead_id, c.event.temperature, c.event.score, c.event.scored_at)
            for c in causes
        ],
    )
    todo: list[tuple[Cause[Any], str | None, str | None]] = []
    for c in causes:
        event = c.event
        funnel_id, stage, known = before[event.lead_id]
        if event.previous_temperature is None and known is not None:
            # The producer did not say where it came from; what we saw last is the answer,
            # so a lead that stays hot does not make a new sales task on every score.
            event = event.model_copy(update={"previous_temperature": known})
        if event.owner is not None:
            await people.set_owner(conn, event.lead_id, event.owner, event.scored_at)
        todo.append((c.to(event), funnel_id, stage))
    await _schedule(batch, todo)


async def record_owner(
    uow: UnitOfWork, event: LeadOwnerChanged, batch: Consuming | None = None
) -> None:
    """A lead taken over, handed on or released: the tasks playbooks make from now on go to
    its owner (tasks already made keep their assignee: people hand those on themselves)."""
    if await _consuming(uow, batch).known.is_erased(event.lead_id):
        return
    await people.set_owner(uow.conn, event.lead_id, event.owner, event.changed_at)


async def _plans(
    batch: Consuming, cause: Cause[Any], *, funnel_id: str | None, stage: str | None
) -> list[TouchPlan]:
    """The touches the playbooks call for on this event (none for a test lead)."""
    if await batch.known.is_test(cause.event.lead_id):
        return []  # a test lead: left out of every playbook
    return plans_for(
        await batch.playbooks(),
        cause.event,
        cause_id=cause.id,
        current_stage=stage,
        funnel_id=funnel_id,
        now=datetime.now(UTC),
    )


async def _schedule(
    batch: Consuming, causes: Sequence[tuple[Cause[Any], str | None, str | None]]
) -> None:
    """The touches the playbooks call for on these events (each with the funnel and stage
    its lead is in), written in one statement."""
    planned: list[tuple[EventData, store.Planned]] = []
    for cause, funnel_id, stage in causes:
        plans = await _plans(batch, cause, funnel_id=funnel_id, stage=stage)
        if plans:
            # The consume span's context: the send joins the trace that began at the post.
            touches = store.Planned(cause.event.lead_id, plans, cause.id, cause.trace_context())
            planned.append((cause.event, touches))
    if not planned:
        return
    written = await store.schedule(batch.uow.conn, [touches for _, touches in planned])
    for (event, touches), wrote in zip(planned, written, strict=True):
        await _scheduled(batch, event, touches.plans, wrote)


async def _scheduled(
    batch: Consuming, event: EventData, plans: list[TouchPlan], written: list[bool]
) -> None:
    """What follows the writing of an event's touches: a stale one counted as skipped, and
    the sender woken when one it must send soon was written."""
    soon = (
        datetime.max.replace(tzinfo=UTC)
        if batch.wake_within is None
        else datetime.now(UTC) + timedelta(seconds=batch.wake_within)
    )
    wake = False
    for plan, wrote in zip(plans, written, strict=True):
        if wrote:
            if plan.stale:
                metrics.TOUCH_OUTCOMES.labels(plan.channel, "skipped").inc()
            elif plan.due_at < soon and (
                # A contact the resolver is still opening: it wakes the sender once stored.
                plan.channel == "task" or event.lead_id not in batch.known.contact_pending
            ):
                wake = True
    if wake:
        await batch.known.wake(TOUCHES_CHANNEL)


# --- the sender ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A touch leased to this sender ('sending'): what it is, its playbook, its contact."""

    touch: DueTouch
    playbook: Playbook
    contact: Contact | None


@dataclass(frozen=True)
class SendRules:
    """The deployment's send-time rules (quiet hours, caps) and batch settings."""

    policy: Policy
    cap_window: timedelta
    batch_size: int
    lease_seconds: float

    @classmethod
    def of(cls, settings: NotifierSettings) -> SendRules:
        quiet = None
        if settings.quiet_hours_start is not None and settings.quiet_hours_end is not None:
            quiet = QuietHours(settings.quiet_hours_start, settings.quiet_hours_end)
        return cls(
            policy=Policy(quiet, settings.default_time_zone, settings.frequency_caps),
            cap_window=max(
                (c.period for caps in settings.frequency_caps.values() for c in caps),
                default=timedelta(days=7),
            ),
            batch_size=settings.send_batch_size,
            lease_seconds=settings.touch_lease_seconds,
        )

    def window(self, stored: StoredPlaybook | None) -> timedelta:
        """How far back sends count against the caps of a touch of this playbook."""
        own = (
            max((c.period for c in stored.playbook.caps), default=timedelta(0)) if stored else None
        )
        return max(self.cap_window, own or timedelta(0))


@dataclass
class ClaimedBatch:
    """What a claim leased, how many touches it handled, and when the next one not among
    them falls due (seconds from now, as the claim's own statement and the deferrals it
    wrote tell; None: none waits)."""

    leased: list[Claimed]
    handled: int
    next_due_in: float | None


async def claim_due(
    tx: Transactions, rules: SendRules, books: PlaybookCache | None = None
) -> ClaimedBatch:
    """One transaction: lock a batch of due touches (SKIP LOCKED: replicas share the work)
    and their leads, re-check every condition, and lease (to send), defer or suppress each.
    The playbooks come from `books` (read again only when the claim's statement tells a new
    revision)."""
    now = datetime.now(UTC)
    books = books if books is not None else PlaybookCache()
    async with tx() as uow:
        conn = uow.conn
        batch = await store.lock_due(conn, rules.batch_size)
        due, next_due_in = batch.touches, batch.next_due_in
        if not due:
            return ClaimedBatch([], 0, next_due_in)
        effective = await books.effective(conn, batch.playbooks_revision)
        leads = sorted({t.lead_id for t in due}, key=str)
        await store.lock_leads(conn, leads)
        window = max(rules.window(effective.get(t.playbook)) for t in due)
        snap = await store.snapshot(conn, leads, now=now, window_start=now - window)
        leased: list[Claimed] = []
        for touch in due:
            stored = effective.get(touch.playbook)
            decision = decide(
                touch,
                snap.facts(touch.lead_id, touch.channel, touch.playbook, touch.id),
                rules.policy,
                now,
                playbook_enabled=stored is not None and stored.playbook.enabled,
                playbook_caps=stored.playbook.caps if stored else (),
            )
            if isinstance(decision, Send) and stored is not None:
                if touch.kind == "marketing":  # counts against the caps of the next ones
                    snap.add_send(touch.lead_id, touch.channel, touch.playbook, touch.id)
                leased.append(Claimed(touch, stored.playbook, snap.contacts.get(touch.lead_id)))
            elif isinstance(decision, Defer):
                await store.defer(conn, touch.id, decision.until, decision.why)
                next_due_in = _sooner(next_due_in, (decision.until - now).total_seconds())
                metrics.TOUCH_OUTCOMES.labels(touch.channel, "deferred").inc()
            else:
                why = decision.why if not isinstance(decision, Send) else "playbook removed"
                await store.suppress(conn, touch.id, why)
                metrics.TOUCH_OUTCOMES.labels(touch.channel, "suppressed").inc()
        if leased:
            await store.lease(conn, [c.touch.id for c in leased], rules.lease_seconds)
    return ClaimedBatch(leased, len(due), next_due_in)


def _sooner(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def compose_email(
    item: Claimed, links: LinkSigner, settings: NotifierSettings
) -> WireEmail | EmailMessage:
    """The email of a claimed touch, in the contact's locale, with its tracked links and, on
    marketing mail, the unsubscribe link (TemplateProblem, KeyError or ValueError if not)."""
    touch, contact = item.touch, item.contact
    assert contact is not None  # an email touch is claimed only once its contact is known
    templates = item.playbook.templates or shipped(touch.template)
    locale, template = pick(templates, contact.locale)
    context: dict[str, Any] = {
        "first_name": contact.first_name,
        "name": contact.first_name,
        "playbook": touch.playbook,
        "stage": touch.stage,
        "funnel_id": touch.funnel_id,
        "tracked": lambda url: links.click_url(touch.id, touch.lead_id, str(url)),
    }
    unsubscribe = None
    if touch.kind == "marketing":
        unsubscribe = links.unsubscribe_url(touch.id, touch.lead_id, touch.category or "marketing")
        context["unsubscribe_url"] = unsubscribe
    rendered = render(template, context, locale)
    return wire_email(
        MailEnvelope(
            touch_id=touch.id,
            to=contact.email,
            mail_from=settings.mail_from,
            domain=settings.message_id_domain,
            locale=locale,
            unsubscribe_url=unsubscribe,
            open_pixel_url=links.open_url(touch.id, touch.lead_id),
        ),
        rendered,
    )


def webhook_payload(item: Claimed) -> Mapping[str, Any]:
    """What a webhook playbook's receiver gets."""
    touch = item.touch
    return {
        "touch_id": str(touch.id),
        "lead_id": str(touch.lead_id),
        "playbook": touch.playbook,
        "funnel_id": touch.funnel_id,
        "stage": touch.stage,
        "contact": person(item.contact, "email", "first_name", "locale"),
        "sent_at": datetime.now(UTC).isoformat(),
    }


def person(contact: Contact | None, *fields: str) -> dict[str, Any]:
    """The contact fields a webhook receiver gets (a CRM needs them; logs never do)."""
    return {f: getattr(contact, f) if contact else None for f in fields}


async def record_outcome(
    uow: UnitOfWork,
    touch: DueTouch,
    outcome: Outcome,
    now: datetime,
    settings: NotifierSettings,
    *,
    team: bool = False,
) -> tuple[str | None, float | None]:
    """Record what the channel answered, once (only a touch still 'sending' is marked):
    sent with funnel.touch.sent, another try after a backoff, or failed for good with
    funnel.touch.failed. Returns the error when it was not delivered. A `team` touch (a
    leak's task for the team, keyed by the leak's id) touched no person: it is recorded
    here, and no touch event tells the others of a lead that does not exist. Also returns
    in how many seconds the touch is due again (None: it is not)."""
    conn = uow.conn
    if isinstance(outcome, Sent):
        if await store.mark_sent(conn, touch.id, outcome.message_id):
            if not team:
                await uow.emit(_touch_sent(touch, outcome.message_id, now))
            _count_sent(touch, now)
        return None, None
    attempts = touch.attempts + 1
    if isinstance(outcome, Failed):
        give_up, error, delay = True, outcome.error, 0.0
    else:
        give_up = _give_up(outcome, touch, attempts, now, settings)
        error = outcome.error
        delay = backoff_seconds(
            attempts,
            base=settings.retry_base_seconds,
            cap=settings.retry_max_seconds,
            retry_after=outcome.delay_s,
        )
    if await store.mark_retry(conn, touch.id, error, delay_s=delay, give_up=give_up):
        if give_up and not team:
            await uow.emit(
                TouchFailed(
                    lead_id=touch.lead_id,
                    touch_id=touch.id,
                    playbook=touch.playbook,
                    channel=_channel(touch.channel),
                    error=error[:2000],
                    attempts=attempts,
                    failed_at=now,
                )
            )
        metrics.TOUCH_OUTCOMES.labels(touch.channel, "failed" if give_up else "retry").inc()
        return error, None if give_up else delay
    return error, None


@dataclass(frozen=True)
class Delivered:
    """A touch its channel took (`Sent`), with the context its touch.sent event is made in
    (the send's span, so the trace goes on from it)."""

    touch: DueTouch
    message_id: str | None
    team: bool
    context: Callable[[], AbstractContextManager[Any]]


async def record_sent(uow: UnitOfWork, delivered: Sequence[Delivered], now: datetime) -> None:
    """`record_outcome` for a batch of sent touches: each still leased marked sent in one
    statement, and their touch.sent events written to the outbox in one (a `team` touch
    writes none)."""
    if not delivered:
        return
    marked = await store.mark_sent_many(
        uow.conn, [d.touch.id for d in delivered], [d.message_id for d in delivered]
    )
    records: list[OutboxRecord] = []
    for d in delivered:
        touch = d.touch
        if touch.id not in marked:
            continue
        if not d.team:
            with d.context():
                records.append(
                    outbox_record(_touch_sent(touch, d.message_id, now), source=uow.outbox.source)
                )
        _count_sent(touch, now)
    await enqueue_many(uow.conn, uow.outbox.schema, records)


def no_outcome() -> Outcome:
    """What a touch that got no answer in its batch is recorded as (tried again, uncounted)."""
    return Retry("no outcome", counted=False)


def _touch_sent(touch: DueTouch, message_id: str | None, at: datetime) -> TouchSent:
    return TouchSent(
        lead_id=touch.lead_id,
        touch_id=touch.id,
        playbook=touch.playbook,
        channel=_channel(touch.channel),
        template=touch.template,
        funnel_id=touch.funnel_id,
        stage=touch.stage,
        message_id=message_id,
        sent_at=at,
    )


def _count_sent(touch: DueTouch, at: datetime) -> None:
    metrics.TOUCH_OUTCOMES.labels(touch.channel, "sent").inc()
    metrics.SEND_LAG.labels(touch.channel).observe(max(0.0, (at - touch.due_at).total_seconds()))


def _channel(name: str) -> Channel:
    return cast(Channel, name)


def _give_up(
    outcome: Retry, touch: DueTouch, attempts: int, now: datetime, settings: NotifierSettings
) -> bool:
    """Counted tries: after the last one. Uncounted ones (an outage, a temporary refusal):
    once the touch has been due for longer than the retry window, as a mail queue would,
    and never before its first touch_max_attempts tries (a replayed touch gets them again)."""
    if attempts < settings.touch_max_attempts:
        return False
    if outcome.counted:
        return True
    return (now - touch.first_due_at).total_seconds() > settings.touch_retry_for_seconds


async def next_due_in(pool: asyncpg.Pool) -> float | None:
    """Seconds until the next touch the sender could claim; None when none waits."""
    async with pool.acquire() as conn:
        return await store.next_due_in_seconds(conn)


# --- the API -------------------------------------------------------------------------------


async def touches_of(conn: asyncpg.Connection, lead_id: UUID) -> list[dict[str, Any]]:
    """Every touch of a lead: scheduled, sent, suppressed, cancelled or skipped (with why),
    failed."""
    return await store.touches_of(conn, lead_id)


Replayed = Literal["scheduled", "not failed", "unknown"]


async def replay(tx: Transactions, touch_id: UUID) -> Replayed:
    """A failed touch scheduled again, due now (same touch id, so receivers can deduplicate)."""
    async with tx() as uow:
        if await store.replay(uow.conn, touch_id):
            await notify(uow.conn, TOUCHES_CHANNEL)
            return "scheduled"
        return "unknown" if await store.touch_lead(uow.conn, touch_id) is None else "not failed"
