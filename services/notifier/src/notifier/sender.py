"""The touch sender: claims due touches, decides, sends, records each outcome once.

One transaction locks a batch of due touches (SKIP LOCKED: replicas share the work), takes a
per-lead lock, re-checks every condition and either leases the touch ('sending'), defers it
(quiet hours, caps) or suppresses it (with why). The batch then goes out (one SMTP
connection for its emails) and a second transaction records 'sent' with its touch.sent
event. A database outage at that point does not drop the providers' answers: the record is
retried, with a bounded backoff, until it commits. A sender that dies (or stops) in between
leaves leases that expire (FUNNEL_TOUCH_LEASE_SECONDS); those touches go again with the same
Message-ID / Idempotency-Key, and are recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, cast
from uuid import UUID

import asyncpg
from opentelemetry import trace

from funnel_contracts import TouchFailed, TouchSent
from funnel_servicekit.listen import Listener
from funnel_servicekit.outbox import enqueue
from funnel_servicekit.runtime import Worker
from funnel_servicekit.telemetry import context_from_headers
from notifier import lead_store, metrics, playbook_store, store, task_store
from notifier.channels import Failed, Outcome, Retry, Sent
from notifier.channels.email_channel import SmtpChannel
from notifier.channels.webhook_channel import WebhookChannel
from notifier.consumer import WAKE_CHANNEL
from notifier.email_message import Envelope, build_email
from notifier.lead_store import Contact
from notifier.links import LinkSigner
from notifier.playbook_model import Channel, Playbook
from notifier.playbook_store import StoredPlaybook
from notifier.retry_policy import backoff_seconds
from notifier.runtime import NotifierRuntime
from notifier.send_rules import Defer, Policy, QuietHours, Send, TouchFacts, decide
from notifier.settings import NotifierSettings
from notifier.templates import TemplateProblem, pick, render, shipped

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

# A lost database connection, as asyncpg and the network report it (TimeoutError is an
# OSError; 57P01 "terminating connection due to administrator command" is operator
# intervention; a connection closed under a query is an InterfaceError).
CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
RECORD_RETRY_FIRST_SECONDS = 0.1
RECORD_RETRY_MAX_SECONDS = 5.0
LISTEN_RETRY_SECONDS = 2.0


@dataclass
class Leased:
    touch: store.DueTouch
    playbook: Playbook
    contact: Contact | None
    span: trace.Span


class TouchSender:
    def __init__(self, pool: asyncpg.Pool, settings: NotifierSettings) -> None:
        self.pool = pool
        self.settings = settings
        self.links = LinkSigner(
            settings.link_signing_key.get_secret_value(), settings.public_base_url
        )
        self.smtp = SmtpChannel(
            settings.smtp_host, settings.smtp_port, settings.smtp_timeout_seconds
        )
        self.webhooks = WebhookChannel(
            secret=settings.webhook_signing_secret.get_secret_value(),
            allowed_hosts=settings.webhook_allowed_hosts,
            allow_private=settings.webhook_allow_private_addresses,
            timeout=settings.webhook_timeout_seconds,
        )
        quiet = None
        if settings.quiet_hours_start is not None and settings.quiet_hours_end is not None:
            quiet = QuietHours(settings.quiet_hours_start, settings.quiet_hours_end)
        self.policy = Policy(quiet, settings.default_time_zone, settings.frequency_caps)
        self._cap_window = max(
            (c.period for caps in settings.frequency_caps.values() for c in caps),
            default=timedelta(days=7),
        )
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        # NOTIFY (new touches, new contacts) wakes the loop; after a database restart the
        # LISTEN connection comes back by itself, and polling covers the gap.
        listener = Listener(
            self.settings.database_url,
            self.settings.db_schema,
            WAKE_CHANNEL,
            self._wake.set,
            retry_seconds=LISTEN_RETRY_SECONDS,
        )
        try:
            while not self._stopping.is_set():
                await listener.ensure()
                try:
                    handled = await self.send_due()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.exception("touch sender failed; retrying")
                    handled = 0
                    await asyncio.sleep(1.0)
                if handled:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), await self._idle_seconds())
                self._wake.clear()
        finally:
            await self.smtp.close()
            await self.webhooks.aclose()
            await listener.close()

    async def _idle_seconds(self) -> float:
        """Sleep until the next touch falls due, at most the poll interval (new touches and
        contacts wake the loop by NOTIFY sooner)."""
        poll = self.settings.scheduler_poll_seconds
        try:
            wait = await self.pool.fetchval(store.NEXT_DUE_IN_SECONDS)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return poll
        return poll if wait is None else min(poll, max(float(wait), 0.01))

    async def send_due(self) -> int:
        """One batch: claim and decide, send, record. Returns how many touches were handled."""
        leased, handled = await self._claim()
        if not leased:
            return handled
        try:
            outcomes = await self._dispatch(leased)
            await self._record_until_committed(leased, outcomes)
        finally:
            for item in leased:
                item.span.end()
        return handled

    async def _claim(self) -> tuple[list[Leased], int]:
        now = datetime.now(UTC)
        leased: list[Leased] = []
        async with self.pool.acquire() as conn, conn.transaction():
            due = await store.lock_due(conn, self.settings.send_batch_size)
            if not due:
                return [], 0
            books = await playbook_store.effective(conn)
            leads = sorted({t.lead_id for t in due}, key=str)
            await store.lock_leads(conn, leads)
            window = max(self._window(books.get(t.playbook)) for t in due)
            snap = await lead_store.snapshot(conn, leads, now=now, window_start=now - window)
            for touch in due:
                stored = books.get(touch.playbook)
                decision = decide(
                    TouchFacts(
                        channel=touch.channel,
                        kind=touch.kind,
                        category=touch.category,
                        playbook=touch.playbook,
                        requires_stage=touch.requires_stage,
                        cancel_on=touch.cancel_on,
                        triggered_at=touch.triggered_at,
                    ),
                    snap.facts(touch.lead_id, touch.channel, touch.playbook, touch.id),
                    self.policy,
                    now,
                    playbook_enabled=stored is not None and stored.playbook.enabled,
                    playbook_caps=stored.playbook.caps if stored else (),
                )
                if isinstance(decision, Send) and stored is not None:
                    if touch.kind == "marketing":  # counts against the caps of the next ones
                        snap.add_send(touch.lead_id, touch.channel, touch.playbook, touch.id)
                    leased.append(
                        Leased(touch, stored.playbook, snap.contacts.get(touch.lead_id),
                               self._span(touch))
                    )  # fmt: skip
                elif isinstance(decision, Defer):
                    await store.defer(conn, touch.id, decision.until, decision.why)
                    metrics.TOUCH_OUTCOMES.labels(touch.channel, "deferred").inc()
                else:
                    why = decision.why if not isinstance(decision, Send) else "playbook removed"
                    await store.suppress(conn, touch.id, why)
                    metrics.TOUCH_OUTCOMES.labels(touch.channel, "suppressed").inc()
            if leased:
                ids = [item.touch.id for item in leased]
                await store.lease(conn, ids, self.settings.touch_lease_seconds)
        return leased, len(due)

    def _span(self, touch: store.DueTouch) -> trace.Span:
        """The send's span, a child of the context stored when the touch was scheduled."""
        return _tracer.start_span(
            f"send touch {touch.channel}",
            context=context_from_headers(touch.trace_context),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "funnel.touch.id": str(touch.id),
                "funnel.touch.playbook": touch.playbook,
                "funnel.touch.channel": touch.channel,
                "funnel.touch.attempt": touch.attempts + 1,
            },
        )

    def _window(self, stored: StoredPlaybook | None) -> timedelta:
        own = (
            max((c.period for c in stored.playbook.caps), default=timedelta(0)) if stored else None
        )
        return max(self._cap_window, own or timedelta(0))

    async def _dispatch(self, leased: list[Leased]) -> dict[UUID, Outcome]:
        outcomes: dict[UUID, Outcome] = {}
        emails: list[tuple[UUID, EmailMessage]] = []
        others: list[Leased] = []
        for item in leased:
            if item.touch.channel == "email":
                try:
                    with trace.use_span(item.span):
                        emails.append((item.touch.id, self._email(item)))
                except (TemplateProblem, KeyError) as exc:
                    outcomes[item.touch.id] = Failed(f"template: {exc}")
                except ValueError as exc:  # e.g. a line break in an address: never a header
                    outcomes[item.touch.id] = Failed(f"message: {exc}")
            else:
                others.append(item)
        email_outcomes, other_outcomes = await asyncio.gather(
            self.smtp.send_batch(emails),
            asyncio.gather(*(self._deliver(item) for item in others)),
        )
        outcomes.update(email_outcomes)
        for item, outcome in zip(others, other_outcomes, strict=True):
            outcomes[item.touch.id] = outcome
        return outcomes

    def _email(self, item: Leased) -> EmailMessage:
        touch, contact = item.touch, item.contact
        assert contact is not None
        templates = item.playbook.templates or shipped(touch.template)
        locale, template = pick(templates, contact.locale)
        context: dict[str, Any] = {
            "first_name": contact.first_name,
            "name": contact.first_name,
            "playbook": touch.playbook,
            "stage": touch.stage,
            "funnel_id": touch.funnel_id,
            "tracked": lambda url: self.links.click_url(touch.id, touch.lead_id, str(url)),
        }
        unsubscribe = None
        if touch.kind == "marketing":
            unsubscribe = self.links.unsubscribe_url(
                touch.id, touch.lead_id, touch.category or "marketing"
            )
            context["unsubscribe_url"] = unsubscribe
        rendered = render(template, context, locale)
        return build_email(
            Envelope(
                touch_id=touch.id,
                to=contact.email,
                mail_from=self.settings.mail_from,
                domain=self.settings.message_id_domain,
                locale=locale,
                unsubscribe_url=unsubscribe,
                open_pixel_url=self.links.open_url(touch.id, touch.lead_id),
            ),
            rendered,
        )

    async def _deliver(self, item: Leased) -> Outcome:
        touch = item.touch
        with trace.use_span(item.span):
            if touch.channel == "webhook":
                assert item.playbook.webhook is not None
                payload = self._webhook_payload(item)
                return await self.webhooks.deliver(
                    item.playbook.webhook.url, touch.id, payload, event="touch"
                )
            async with self.pool.acquire() as conn:
                task = await task_store.create(
                    conn,
                    touch.id,
                    touch.lead_id,
                    playbook=touch.playbook,
                    title=item.playbook.task_title,
                    funnel_id=touch.funnel_id,
                    stage=touch.stage,
                )
            if not task:
                return Failed("the lead was erased")
            url = self.settings.sales_task_webhook_url
            if not url:
                return Sent()
            payload = {"task": task, "contact": _person(item.contact, "email", "first_name")}
            return await self.webhooks.deliver(url, touch.id, payload, event="task")

    def _webhook_payload(self, item: Leased) -> Mapping[str, Any]:
        touch = item.touch
        return {
            "touch_id": str(touch.id),
            "lead_id": str(touch.lead_id),
            "playbook": touch.playbook,
            "funnel_id": touch.funnel_id,
            "stage": touch.stage,
            "contact": _person(item.contact, "email", "first_name", "locale"),
            "sent_at": datetime.now(UTC).isoformat(),
        }

    async def _record_until_committed(
        self, leased: list[Leased], outcomes: Mapping[UUID, Outcome]
    ) -> None:
        """Record the batch, retrying on a lost connection until it commits.

        The answers cannot be asked for again: dropping them would hand the batch over a
        second time when its lease runs out. Recording twice is harmless (only a touch still
        'sending' is marked). A stop ends the retries: the lease rule then applies.
        """
        delay, tries = RECORD_RETRY_FIRST_SECONDS, 0
        while True:
            try:
                await self._record(leased, outcomes)
                return
            except CONNECTION_ERRORS as exc:
                tries += 1
                if self._stopping.is_set():
                    raise
                log.warning(
                    "recording the batch failed; retrying",
                    extra={"touches": len(leased), "try": tries, "error": type(exc).__name__},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, RECORD_RETRY_MAX_SECONDS)

    async def _record(self, leased: list[Leased], outcomes: Mapping[UUID, Outcome]) -> None:
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            for item in leased:
                touch = item.touch
                outcome = outcomes.get(touch.id, Retry("no outcome", counted=False))
                with trace.use_span(item.span):
                    await self._record_one(conn, touch, outcome, now)

    async def _record_one(
        self, conn: asyncpg.Connection, touch: store.DueTouch, outcome: Outcome, now: datetime
    ) -> None:
        schema, source = self.settings.db_schema, self.settings.service_name
        if isinstance(outcome, Sent):
            if await store.mark_sent(conn, touch.id, outcome.message_id):
                await enqueue(
                    conn,
                    schema,
                    TouchSent(
                        lead_id=touch.lead_id,
                        touch_id=touch.id,
                        playbook=touch.playbook,
                        channel=_channel(touch.channel),
                        template=touch.template,
                        funnel_id=touch.funnel_id,
                        stage=touch.stage,
                        message_id=outcome.message_id,
                        sent_at=now,
                    ),
                    source=source,
                )
                metrics.TOUCH_OUTCOMES.labels(touch.channel, "sent").inc()
                metrics.SEND_LAG.labels(touch.channel).observe(
                    max(0.0, (now - touch.due_at).total_seconds())
                )
            return
        attempts = touch.attempts + 1
        if isinstance(outcome, Failed):
            give_up, error, delay = True, outcome.error, 0.0
        else:
            give_up = _give_up(outcome, touch, attempts, now, self.settings)
            error = outcome.error
            delay = _backoff(attempts, self.settings, outcome.delay_s)
        if await store.mark_retry(conn, touch.id, error, delay_s=delay, give_up=give_up):
            if give_up:
                await enqueue(
                    conn,
                    schema,
                    TouchFailed(
                        lead_id=touch.lead_id,
                        touch_id=touch.id,
                        playbook=touch.playbook,
                        channel=_channel(touch.channel),
                        error=error[:2000],
                        attempts=attempts,
                        failed_at=now,
                    ),
                    source=source,
                )
            metrics.TOUCH_OUTCOMES.labels(touch.channel, "failed" if give_up else "retry").inc()
        log.warning(
            "touch not delivered",
            extra={"touch_id": str(touch.id), "attempt": attempts, "error": error[:200]},
        )


def _person(contact: Contact | None, *fields: str) -> dict[str, Any]:
    """The contact fields a webhook receiver gets (a CRM needs them; logs never do)."""
    return {f: getattr(contact, f) if contact else None for f in fields}


def _channel(name: str) -> Channel:
    return cast(Channel, name)


def _give_up(
    outcome: Retry, touch: store.DueTouch, attempts: int, now: datetime, settings: NotifierSettings
) -> bool:
    """Counted tries: after the last one. Uncounted ones (an outage, a temporary refusal):
    once the touch has been due for longer than the retry window, as a mail queue would,
    and never before its first touch_max_attempts tries (a replayed touch gets them again)."""
    if attempts < settings.touch_max_attempts:
        return False
    if outcome.counted:
        return True
    return (now - touch.first_due_at).total_seconds() > settings.touch_retry_for_seconds


def _backoff(attempt: int, settings: NotifierSettings, retry_after: float | None) -> float:
    return backoff_seconds(
        attempt,
        base=settings.retry_base_seconds,
        cap=settings.retry_max_seconds,
        retry_after=retry_after,
    )


def sender_worker(runtime: NotifierRuntime) -> Worker:
    settings = runtime.settings
    assert isinstance(settings, NotifierSettings)
    sender = TouchSender(runtime.pool, settings)
    return Worker("touch-sender", sender.run, sender.stop)
