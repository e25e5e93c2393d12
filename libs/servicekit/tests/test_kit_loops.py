"""The one poll loop: full batches go again at once, an idle loop sleeps until woken or its
poll, an unreachable database pauses with a growing wait, anything else ends the run (for
the supervisor), and per-run resources are opened and closed on every run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from funnel_servicekit.loops import ListenOn, PollLoop, RetryLater


class Scripted(PollLoop):
    """Steps return (or raise) what the script says; then the loop stops itself."""

    def __init__(self, script: list[int | BaseException], **kwargs: float) -> None:
        super().__init__(
            "scripted",
            poll_seconds=kwargs.get("poll_seconds", 60.0),
            batch_size=10,
            error_pause_seconds=kwargs.get("error_pause_seconds", 0.01),
        )
        self.script = list(script)
        self.steps = 0
        self.sleeps: list[float] = []
        self.opened = 0
        self.closed = 0

    async def step(self) -> int:
        self.steps += 1
        if not self.script:
            self.stop()
            return 0
        outcome = self.script.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(min(seconds, 0.01))

    @contextlib.asynccontextmanager
    async def resources(self) -> AsyncIterator[None]:
        self.opened += 1
        try:
            yield
        finally:
            self.closed += 1


async def test_full_batches_go_again_at_once_and_a_short_one_sleeps_the_poll() -> None:
    loop = Scripted([10, 10, 3, 10, 0])
    await asyncio.wait_for(loop.run(), 5)
    # 10 and 10: no sleep; 3: sleep; 10: none; 0: sleep; then the script ends (stop).
    assert loop.steps == 6
    assert loop.sleeps == [60.0, 60.0, 60.0]
    assert (loop.opened, loop.closed) == (1, 1)


async def test_an_unreachable_database_pauses_longer_each_time_then_resets() -> None:
    down = asyncpg.CannotConnectNowError("starting up")
    loop = Scripted([down, down, ConnectionRefusedError(), RetryLater(), 10, 0], poll_seconds=5)
    await asyncio.wait_for(loop.run(), 5)
    assert loop.sleeps[:4] == [0.01, 0.02, 0.04, 0.08]
    assert loop.sleeps[4:] == [5, 5]  # after a good batch the pause starts over


async def test_an_unexpected_error_ends_the_run_with_resources_closed_and_it_can_run_again() -> (
    None
):
    loop = Scripted([ValueError("a bug"), 0])
    with pytest.raises(ValueError, match="a bug"):
        await loop.run()
    assert (loop.opened, loop.closed) == (1, 1)
    await asyncio.wait_for(loop.run(), 5)  # what the supervisor does next
    assert (loop.opened, loop.closed) == (2, 2)


async def test_wake_ends_an_idle_sleep_and_stop_ends_the_loop() -> None:
    class Idle(PollLoop):
        def __init__(self) -> None:
            super().__init__("idle", poll_seconds=3600, batch_size=10)
            self.steps = 0

        async def step(self) -> int:
            self.steps += 1
            return 0

    loop = Idle()
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    assert loop.steps == 1  # asleep for an hour
    loop.wake()
    await asyncio.sleep(0.05)
    assert loop.steps == 2
    loop.stop()
    await asyncio.wait_for(task, 1)
    assert loop.worker().name == "idle"


async def test_a_wake_up_lingers_so_one_step_takes_the_wake_ups_of_that_while() -> None:
    """With `wake_linger_seconds`, the wake-ups that come while the loop lingers after one
    are taken by the same step (several commits, one read); a wake-up after that step gets a
    step of its own, and a stop ends the linger at once."""

    class Idle(PollLoop):
        def __init__(self, linger: float) -> None:
            super().__init__("idle", poll_seconds=3600, batch_size=10, wake_linger_seconds=linger)
            self.steps = 0

        async def step(self) -> int:
            self.steps += 1
            return 0

    for linger, expected in ((1.5, 2), (0.0, 5)):
        loop = Idle(linger)
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.05)
        assert loop.steps == 1
        for _ in range(4):  # four wake-ups 60 ms apart: within one linger of the first
            loop.wake()
            await asyncio.sleep(0.06)
        await asyncio.sleep(1.5)
        assert loop.steps == expected, f"linger {linger}: {loop.steps} steps"
        loop.wake()
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        loop.stop()  # in the middle of a linger (or none): ends at once
        await asyncio.wait_for(task, 1)
        assert asyncio.get_running_loop().time() - started < 0.3


async def test_after_a_busy_step_a_wake_up_waits_for_the_interval_after_a_quiet_one_not() -> None:
    """With `wake_interval_seconds`, after a step that answered several wake-ups (a busy
    moment), the next woken step begins no sooner than the interval after that one began;
    after a step that answered one wake-up, a wake-up waits only the linger, however soon."""

    class Timed(PollLoop):
        def __init__(self) -> None:
            super().__init__(
                "timed",
                poll_seconds=3600,
                batch_size=10,
                wake_linger_seconds=0.01,
                wake_interval_seconds=1.0,
            )
            self.began: list[float] = []

        async def step(self) -> int:
            self.began.append(asyncio.get_running_loop().time())
            return 0

    loop = Timed()
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    assert len(loop.began) == 1
    for _ in range(3):  # three commits at once: one step answers them (busy)
        loop.wake()
    await asyncio.sleep(0.1)
    assert len(loop.began) == 2
    loop.wake()  # soon after the busy step: waits for the interval
    await asyncio.sleep(1.2)
    assert len(loop.began) == 3, loop.began
    assert loop.began[2] - loop.began[1] >= 1.0
    woken = asyncio.get_running_loop().time()
    loop.wake()  # soon after a step that answered one wake-up: the linger only
    await asyncio.sleep(0.5)
    assert len(loop.began) == 4, loop.began
    assert loop.began[3] - woken < 0.5
    assert loop.began[3] - loop.began[2] < 1.0
    loop.stop()
    await asyncio.wait_for(task, 1)


class _OpenConnection:
    def is_closed(self) -> bool:
        return False


def test_while_listen_is_up_a_loop_polls_at_its_listening_interval() -> None:
    """NOTIFY brings the work while LISTEN is up: the timer is the fallback and may be long;
    with LISTEN down (or no listening interval) the short poll applies."""
    loop = Scripted([])
    assert loop.poll_interval == 60.0  # no LISTEN at all: the poll
    listening = Listening(listening_poll_seconds=30.0)
    assert not listening.listening
    assert listening.poll_interval == 0.5  # LISTEN down: the short poll
    assert listening._listener is not None
    listening._listener._conn = _OpenConnection()  # type: ignore[assignment]
    assert listening.listening
    assert listening.poll_interval == 30.0
    never_longer = Listening(listening_poll_seconds=None)
    assert never_longer._listener is not None
    never_longer._listener._conn = _OpenConnection()  # type: ignore[assignment]
    assert never_longer.poll_interval == 0.5


class Listening(PollLoop):
    def __init__(self, *, listening_poll_seconds: float | None) -> None:
        super().__init__(
            "listening",
            poll_seconds=0.5,
            batch_size=10,
            listen=ListenOn("postgresql://127.0.0.1:1/nothing", "public", "chan"),
            listening_poll_seconds=listening_poll_seconds,
        )

    async def step(self) -> int:
        return 0
