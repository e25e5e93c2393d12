"""The one skeleton of a polling background loop (the outbox relay, the touch sender, the
stall timers, the Meta lead fetcher): do a batch; go again at once while batches come back
full; otherwise sleep until the next poll, a wake-up (NOTIFY on an optional LISTEN channel,
or `wake()`), or `stop()`. While LISTEN is up a loop may poll less often
(`listening_poll_seconds`): NOTIFY brings its work, and a dropped LISTEN wakes it. A
dependency that is away (the database restarting) is logged and retried with a growing
pause; anything else ends `run()`, and the runtime's supervisor restarts the loop and counts
it (`funnel_worker_restarts_total`).

Clients a loop needs are opened in `resources()` on every run, so a loop can run again after
it ended (the supervisor calls `run()` on the same object).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from funnel_servicekit.db import DATABASE_UNREACHABLE
from funnel_servicekit.listen import Listener
from funnel_servicekit.worker import Worker

log = logging.getLogger(__name__)
MAX_ERROR_PAUSE_SECONDS = 30.0


class RetryLater(Exception):
    """Raised by a step that failed in a way it already handled: pause, then go on."""


@dataclass(frozen=True)
class ListenOn:
    """A NOTIFY channel that wakes the loop (its own connection, back after it drops)."""

    dsn: str
    schema: str
    channel: str
    retry_seconds: float = 5.0


class PollLoop(abc.ABC):
    """Subclasses say what one batch is (`step`) and how long to sleep when idle."""

    #: What a step may raise when a dependency is briefly away: retried, not a crash.
    transient_errors: tuple[type[BaseException], ...] = (
        OSError,
        RetryLater,
        *DATABASE_UNREACHABLE,
    )

    def __init__(
        self,
        name: str,
        *,
        poll_seconds: float,
        batch_size: int,
        listen: ListenOn | None = None,
        error_pause_seconds: float = 1.0,
        max_error_pause_seconds: float = MAX_ERROR_PAUSE_SECONDS,
        listening_poll_seconds: float | None = None,
        wake_linger_seconds: float = 0.0,
        wake_interval_seconds: float = 0.0,
    ) -> None:
        self.name = name
        # After a wake-up, wait this long before the batch, so that one batch carries the
        # work of the wake-ups that come meanwhile (several commits, one read).
        self.wake_linger_seconds = wake_linger_seconds
        # And, after a batch that answered more than one wake-up (several commits within
        # its linger: a busy moment), start the next woken batch no sooner than this after
        # that one started, so that it takes the wake-ups of that while too; after a batch
        # that answered one, or none, a wake-up waits only the linger (docs/decisions/0092).
        self.wake_interval_seconds = wake_interval_seconds
        self._busy_batch_started = -math.inf
        self._wakes = 0  # wake-ups not yet answered by a batch (counted since the last one began)
        self._answered = 0  # wake-ups the current batch answers
        self.poll_seconds = poll_seconds
        # While the LISTEN connection is up, NOTIFY brings new work: the timer is only the
        # fallback and may be longer (None: `poll_seconds` either way).
        self.listening_poll_seconds = listening_poll_seconds
        self.batch_size = batch_size
        self.error_pause_seconds = error_pause_seconds
        self.max_error_pause_seconds = max_error_pause_seconds
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._listener = (
            Listener(
                listen.dsn,
                listen.schema,
                listen.channel,
                self.wake,
                retry_seconds=listen.retry_seconds,
            )
            if listen
            else None
        )

    @abc.abstractmethod
    async def step(self) -> int:
        """One batch of work; returns how many items it handled."""

    @property
    def poll_interval(self) -> float:
        """The idle poll now: `listening_poll_seconds` while LISTEN is up, else `poll_seconds`."""
        if self.listening_poll_seconds is not None and self.listening:
            return max(self.listening_poll_seconds, self.poll_seconds)
        return self.poll_seconds

    async def idle_seconds(self) -> float:
        """How long to sleep after a batch that was not full (a wake-up ends it sooner)."""
        return self.poll_interval

    @contextlib.asynccontextmanager
    async def resources(self) -> AsyncIterator[None]:
        """Open what one run needs (HTTP clients, ...) and close it when the run ends."""
        yield

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up (NOTIFY wakes the loop)."""
        return self._listener is not None and self._listener.listening

    def wake(self) -> None:
        """Do the next batch now (new work was committed)."""
        self._wakes += 1
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def worker(self) -> Worker:
        return Worker(self.name, self.run, self.stop)

    async def run(self) -> None:
        failures = 0
        try:
            async with self.resources():
                while not self._stopping.is_set():
                    if self._listener is not None:
                        await self._listener.ensure()
                    started = asyncio.get_running_loop().time()
                    try:
                        handled = await self.step()
                    except self.transient_errors:
                        failures += 1
                        pause = min(
                            self.error_pause_seconds * 2 ** (failures - 1),
                            self.max_error_pause_seconds,
                        )
                        log.warning(
                            "%s: batch failed; retrying in %.0f s",
                            self.name,
                            pause,
                            exc_info=True,
                            extra={"worker": self.name},
                        )
                        await self.sleep(pause)
                        continue
                    failures = 0
                    busy = self._answered > 1 or handled >= self.batch_size
                    self._busy_batch_started = started if busy else -math.inf
                    if handled >= self.batch_size:
                        continue  # more is waiting
                    await self.sleep(await self._idle())
        finally:
            if self._listener is not None:
                await self._listener.close()

    async def _idle(self) -> float:
        seconds = await self.idle_seconds()
        if self._listener is not None and not self._listener.listening:
            # No NOTIFY: poll, and try LISTEN again, at the shorter interval.
            seconds = min(seconds, self._listener.retry_seconds)
        return seconds

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or until woken or stopped. Woken (not stopped), wait
        `wake_linger_seconds` more, and until `wake_interval_seconds` after the last batch
        began if that is later and that batch answered more than one wake-up: the wake-ups
        of that while are taken by the same batch (the event is cleared after it, before
        the batch reads, so none is lost)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))
        if self._wake.is_set() and not self._stopping.is_set():
            now = asyncio.get_running_loop().time()
            linger = max(
                self.wake_linger_seconds,
                self._busy_batch_started + self.wake_interval_seconds - now,
            )
            if linger > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), linger)
        self._answered, self._wakes = self._wakes, 0
        self._wake.clear()
