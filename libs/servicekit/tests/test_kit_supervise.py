"""The supervisor restarts a crashed loop, counts it, and backs off only while it keeps crashing."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from funnel_servicekit.runtime import Worker, supervise


def _restarts(name: str) -> float:
    value = REGISTRY.get_sample_value("funnel_worker_restarts_total", {"worker": name})
    return value or 0.0


class Waits:
    """Records how long the supervisor waited before each restart, without waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, stopping: asyncio.Event, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_a_crashing_loop_is_run_again_until_it_ends() -> None:
    waits = Waits()
    runs: list[int] = []

    async def run() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise RuntimeError(f"crash {len(runs)}")

    before = _restarts("it-crashes-thrice")
    await supervise(Worker("it-crashes-thrice", run, lambda: None), asyncio.Event(), pause=waits)
    assert runs == [0, 1, 2, 3]
    assert _restarts("it-crashes-thrice") - before == 3
    assert waits.seconds == [1.0, 2.0, 4.0]  # backs off while it keeps crashing at once


async def test_a_loop_that_ran_a_while_before_crashing_restarts_quickly() -> None:
    waits = Waits()
    # (start, crash) of each run: two quick crashes, one after 199 s, one quick again.
    times = iter([0.0, 0.1, 0.5, 0.6, 1.0, 200.0, 200.5, 200.6, 201.0])
    crashes = 0

    async def run() -> None:
        nonlocal crashes
        crashes += 1
        if crashes <= 4:
            raise OSError("crash")

    await supervise(
        Worker("it-long-run", run, lambda: None),
        asyncio.Event(),
        clock=lambda: next(times),
        pause=waits,
    )
    # Two quick crashes, then a run of ~199 s (healthy): the wait starts from 1 s again.
    assert waits.seconds == [1.0, 2.0, 1.0, 2.0]


async def test_a_crash_while_stopping_is_not_restarted() -> None:
    waits = Waits()
    stopping = asyncio.Event()
    runs = 0

    async def run() -> None:
        nonlocal runs
        runs += 1
        stopping.set()
        raise RuntimeError("failed on the way out")

    await supervise(Worker("it-stopping", run, lambda: None), stopping, pause=waits)
    assert runs == 1
    assert waits.seconds == []
