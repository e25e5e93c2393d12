"""The contact resolver: a loop that opens the sealed personal data lead events left waiting
(people.service.resolve_contacts), woken by NOTIFY when the consumer records some. While
lead-intake is unreachable the rows wait with a growing pause, and the event path goes on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from funnel_servicekit.db import DATABASE_UNREACHABLE
from funnel_servicekit.loops import ListenOn, PollLoop
from funnel_servicekit.runtime import Worker
from funnel_servicekit.unit_of_work import Outbox, Transactions
from notifier.people import service
from notifier.people.data_keys import DataKeys
from notifier.retry_policy import backoff_seconds
from notifier.runtime import NotifierRuntime
from notifier.settings import NotifierSettings
from notifier.wake import CONTACTS_CHANNEL

UNREACHABLE: tuple[type[Exception], ...] = (OSError, *DATABASE_UNREACHABLE)


class ContactResolver(PollLoop):
    def __init__(self, pool: asyncpg.Pool, settings: NotifierSettings) -> None:
        super().__init__(
            "contact-resolver",
            poll_seconds=settings.scheduler_poll_seconds,
            listening_poll_seconds=settings.scheduler_listening_poll_seconds,
            batch_size=settings.send_batch_size,
            listen=ListenOn(settings.database_url, settings.db_schema, CONTACTS_CHANNEL, 2.0),
        )
        self.settings = settings
        self.tx = Transactions(pool, Outbox(settings.db_schema, settings.service_name))
        self.how = service.Resolving(
            batch_size=settings.send_batch_size,
            key_requests=settings.contact_key_requests,
            lease_seconds=settings.touch_lease_seconds,
            backoff=lambda attempt: backoff_seconds(
                attempt, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
            ),
        )
        self.keys: DataKeys | None = None
        # When the next waiting row may be tried, as the last step told; None: ask.
        self._next_in: float | None = None
        self._next_known = False

    @contextlib.asynccontextmanager
    async def resources(self) -> AsyncIterator[None]:
        key = self.settings.intake_api_key
        self.keys = DataKeys(
            self.settings.intake_url,
            key.get_secret_value() if key else None,
            self.settings.intake_timeout_seconds,
        )
        try:
            yield
        finally:
            keys, self.keys = self.keys, None
            await keys.aclose()

    async def step(self) -> int:
        assert self.keys is not None, "step() runs inside resources()"
        self._next_known = False
        resolved = await service.resolve_contacts(self.tx, self.keys, self.how)
        self._next_in, self._next_known = resolved.next_in, True
        return resolved.taken

    async def idle_seconds(self) -> float:
        """Until the next waiting row may be tried, at most the poll interval (the step's
        claim told when that is: no query of its own then)."""
        poll = self.poll_interval
        if self._next_known:
            self._next_known = False
            wait = self._next_in
            return poll if wait is None else min(poll, max(wait, 0.01))
        try:
            wait = await service.next_pending_in(self.tx)
        except UNREACHABLE:
            return self.poll_interval
        return poll if wait is None else min(poll, max(wait, 0.01))

    async def resolve_waiting(self) -> int:
        """One pass over the rows that may be tried now (tests); how many it took."""
        async with self.resources():
            total = handled = await self.step()
            while handled >= self.batch_size:
                handled = await self.step()
                total += handled
            return total


def contact_resolver_worker(runtime: NotifierRuntime) -> Worker:
    return ContactResolver(runtime.pool, runtime.settings).worker()
