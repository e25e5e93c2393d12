"""The touch sender: claims due touches, decides, sends, records each outcome once.

One transaction locks a batch of due touches (SKIP LOCKED: replicas share the work), takes a
per-lead lock, re-checks every condition and either leases the touch ('sending'), defers it
(quiet hours, caps) or suppresses it (with why); see touches.service.claim_due. The batch
then goes out with no transaction open (one SMTP connection for its emails) and a second
transaction records 'sent' with its touch.sent event. A database outage at that point does
not drop the providers' answers: the record is retried, with a bounded backoff, until it
commits. A sender that dies (or stops) in between leaves leases that expire
(FUNNEL_TOUCH_LEASE_SECONDS); those touches go again with the same Message-ID /
Idempotency-Key, and are recorded once.

A touch whose contact is not known yet (its sealed data waits for the contact resolver) is
not claimed; the NOTIFY that comes with its contact wakes the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from uuid import UUID

import asyncpg
from opentelemetry import trace

from funnel_servicekit.db import DATABASE_UNREACHABLE
from funnel_servicekit.loops import ListenOn, PollLoop
from funnel_servicekit.runtime import Worker
from funnel_servicekit.telemetry import context_from_headers
from funnel_servicekit.unit_of_work import Outbox, Transactions, UnitOfWork
from notifier.channels import Failed, Outcome, Sent, WireEmail
from notifier.channels.smtp import SmtpChannel
from notifier.channels.webhook import WebhookChannel
from notifier.links import LinkSigner
from notifier.playbooks.models import LeakTrigger
from notifier.playbooks.models.templates import TemplateProblem
from notifier.playbooks.service import PlaybookCache
from notifier.runtime import NotifierRuntime
from notifier.settings import NotifierSettings
from notifier.tasks import service as tasks
from notifier.touches import service
from notifier.touches.models.due import DueTouch
from notifier.wake import TOUCHES_CHANNEL

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

# A lost database connection, as asyncpg and the network report it (TimeoutError is an
# OSError; pg_terminate_backend is an AdminShutdownError; a connection closed under a query
# is an InterfaceError).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (OSError, *DATABASE_UNREACHABLE)
RECORD_RETRY_FIRST_SECONDS = 0.1
RECORD_RETRY_MAX_SECONDS = 5.0
LISTEN_RETRY_SECONDS = 2.0


@dataclass
class Leased:
    """A claimed touch on its way out, under its send span."""

    claimed: service.Claimed
    span: trace.Span

    @property
    def touch(self) -> DueTouch:
        return self.claimed.touch


@dataclass
class Channels:
    """The clients of one sender run (opened in `resources()`, closed when the run ends)."""

    smtp: SmtpChannel
    webhooks: WebhookChannel

    @classmethod
    def of(cls, settings: NotifierSettings) -> Channels:
        return cls(
            SmtpChannel(settings.smtp_host, settings.smtp_port, settings.smtp_timeout_seconds),
            WebhookChannel(
                secret=settings.webhook_signing_secret.get_secret_value(),
                allowed_hosts=settings.webhook_allowed_hosts,
                allow_private=settings.webhook_allow_private_addresses,
                timeout=settings.webhook_timeout_seconds,
            ),
        )

    async def close(self) -> None:
        await self.smtp.close()
        await self.webhooks.aclose()


class TouchSender(PollLoop):
    # Any server-side error of a batch (not only an unreachable database) is retried.
    transient_errors = (*PollLoop.transient_errors, asyncpg.PostgresError)

    def __init__(self, pool: asyncpg.Pool, settings: NotifierSettings) -> None:
        super().__init__(
            "touch-sender",
            poll_seconds=settings.scheduler_poll_seconds,
            listening_poll_seconds=settings.scheduler_listening_poll_seconds,
            batch_size=settings.send_batch_size,
            # NOTIFY (new touches, new contacts) wakes the loop; after a database restart
            # the LISTEN connection comes back by itself, and polling covers the gap.
            listen=ListenOn(
                settings.database_url, settings.db_schema, TOUCHES_CHANNEL, LISTEN_RETRY_SECONDS
            ),
        )
        self.pool = pool
        self.settings = settings
        self.tx = Transactions(pool, Outbox(settings.db_schema, settings.service_name))
        self.rules = service.SendRules.of(settings)
        self.links = LinkSigner.of(settings)
        self.channels: Channels | None = None
        self.playbooks = PlaybookCache()
        # When the next touch falls due (time.monotonic()), as the last step's own claim and
        # records told; None: ask the database (no step ran since it was used).
        self._next_due_at: float | None = None
        self._next_due_known = False

    @contextlib.asynccontextmanager
    async def resources(self) -> AsyncIterator[None]:
        self.channels = Channels.of(self.settings)
        try:
            yield
        finally:
            channels, self.channels = self.channels, None
            await channels.close()

    async def idle_seconds(self) -> float:
        """Sleep until the next touch falls due, at most the poll interval (new touches and
        contacts wake the loop by NOTIFY sooner). The step's claim told when that is (and
        its deferrals and retries moved it sooner): no query of its own then."""
        poll = self.poll_interval
        if self._next_due_known:
            self._next_due_known = False
            due_at = self._next_due_at
            wait = None if due_at is None else due_at - time.monotonic()
        else:
            try:
                wait = await service.next_due_in(self.pool)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError):
                return poll
        return poll if wait is None else min(poll, max(wait, 0.01))

    def _due_in(self, seconds: float | None) -> None:
        """A touch falls due in `seconds` (None: nothing new): the next sleep ends by then."""
        if seconds is None:
            return
        at = time.monotonic() + seconds
        if self._next_due_at is None or at < self._next_due_at:
            self._next_due_at = at

    async def send_due(self) -> int:
        """One batch outside `run()` (tests, benchmarks), with this sender's channels if a
        run has them open, else with channels opened for it."""
        if self.channels is not None:
            return await self.step()
        async with self.resources():
            return await self.step()

    async def step(self) -> int:
        """One batch: claim and decide, send, record. Returns how many touches were handled."""
        assert self.channels is not None, "step() runs inside resources()"
        self._next_due_known = False
        batch = await service.claim_due(self.tx, self.rules, self.playbooks)
        self._next_due_at = None
        self._due_in(batch.next_due_in)
        claimed, handled = batch.leased, batch.handled
        if claimed:
            leased = [Leased(c, self._span(c.touch)) for c in claimed]
            try:
                outcomes = await self._dispatch(self.channels, leased)
                await self._record_until_committed(leased, outcomes)
            finally:
                for item in leased:
                    item.span.end()
        self._next_due_known = True
        return handled

    def _span(self, touch: DueTouch) -> trace.Span:
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

    async def _dispatch(self, channels: Channels, leased: list[Leased]) -> dict[UUID, Outcome]:
        outcomes: dict[UUID, Outcome] = {}
        emails: list[tuple[UUID, WireEmail | EmailMessage]] = []
        others: list[Leased] = []
        for item in leased:
            if item.touch.channel == "email":
                try:
                    with trace.use_span(item.span):
                        email = service.compose_email(item.claimed, self.links, self.settings)
                    emails.append((item.touch.id, email))
                except (TemplateProblem, KeyError) as exc:
                    outcomes[item.touch.id] = Failed(f"template: {exc}")
                except ValueError as exc:  # e.g. a line break in an address: never a header
                    outcomes[item.touch.id] = Failed(f"message: {exc}")
            else:
                others.append(item)
        email_outcomes, other_outcomes = await asyncio.gather(
            channels.smtp.send_batch(emails),
            asyncio.gather(*(self._deliver(channels, item) for item in others)),
        )
        outcomes.update(email_outcomes)
        for item, outcome in zip(others, other_outcomes, strict=True):
            outcomes[item.touch.id] = outcome
        return outcomes

    async def _deliver(self, channels: Channels, item: Leased) -> Outcome:
        touch, playbook = item.touch, item.claimed.playbook
        with trace.use_span(item.span):
            if touch.channel == "webhook":
                assert playbook.webhook is not None
                payload = service.webhook_payload(item.claimed)
                return await channels.webhooks.deliver(
                    playbook.webhook.url, touch.id, payload, event="touch"
                )
            task = await tasks.open_task(
                self.tx,
                touch.id,
                touch.lead_id,
                playbook=touch.playbook,
                title=playbook.task_title,
                funnel_id=touch.funnel_id,
                stage=touch.stage,
                # A leak's touch is keyed by the leak's id: the team's task, no person's.
                leak_id=touch.lead_id if isinstance(playbook.trigger, LeakTrigger) else None,
            )
            if not task:
                return Failed("the lead was erased")
            url = self.settings.sales_task_webhook_url
            if not url:
                return Sent()
            contact = service.person(item.claimed.contact, "email", "first_name")
            payload = {"task": task, "contact": contact}
            return await channels.webhooks.deliver(url, touch.id, payload, event="task")

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
                if self.stopping:
                    raise
                log.warning(
                    "recording the batch failed; retrying",
                    extra={"touches": len(leased), "try": tries, "error": type(exc).__name__},
                )
            with contextlib.suppress(TimeoutError):  # only a stop ends the wait early
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, RECORD_RETRY_MAX_SECONDS)

    async def _record(self, leased: list[Leased], outcomes: Mapping[UUID, Outcome]) -> None:
        now = datetime.now(UTC)
        async with self.tx() as uow:
            await self._record_batch(uow, leased, outcomes, now)

    async def _record_batch(
        self,
        uow: UnitOfWork,
        leased: list[Leased],
        outcomes: Mapping[UUID, Outcome],
        now: datetime,
    ) -> None:
        """The batch's sent touches in two statements; the others one by one (rarer)."""
        delivered: list[service.Delivered] = []
        for item in leased:
            outcome = outcomes.get(item.touch.id, service.no_outcome())
            # A leak's touch makes the team's task: no person was touched.
            team = isinstance(item.claimed.playbook.trigger, LeakTrigger)
            if isinstance(outcome, Sent):
                delivered.append(
                    service.Delivered(
                        item.touch,
                        outcome.message_id,
                        team,
                        functools.partial(trace.use_span, item.span),
                    )
                )
                continue
            with trace.use_span(item.span):
                await self._record_one(uow, item.touch, outcome, now, team=team)
        await service.record_sent(uow, delivered, now)

    async def _record_one(
        self,
        uow: UnitOfWork,
        touch: DueTouch,
        outcome: Outcome,
        now: datetime,
        *,
        team: bool = False,
    ) -> None:
        error, again_in = await service.record_outcome(
            uow, touch, outcome, now, self.settings, team=team
        )
        self._due_in(again_in)  # a retry: the next sleep ends by then
        if error is not None:
            log.warning(
                "touch not delivered",
                extra={
                    "touch_id": str(touch.id),
                    "attempt": touch.attempts + 1,
                    "error": error[:200],
                },
            )


def sender_worker(runtime: NotifierRuntime) -> Worker:
    return TouchSender(runtime.pool, runtime.settings).worker()
