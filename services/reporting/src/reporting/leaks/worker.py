"""The leak watch: a loop that checks every funnel's steps every FUNNEL_LEAK_CHECK_SECONDS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from funnel_servicekit.loops import PollLoop
from funnel_servicekit.unit_of_work import Outbox, Transactions
from funnel_servicekit.worker import Worker
from reporting.leaks import service
from reporting.leaks.models import Rule
from reporting.runtime import ReportingRuntime


def _now() -> datetime:
    return datetime.now(UTC)


class LeakWatch(PollLoop):
    def __init__(
        self,
        pool: asyncpg.Pool,
        rule: Rule,
        *,
        schema: str,
        source: str,
        poll_seconds: float,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        super().__init__("leak-watch", poll_seconds=poll_seconds, batch_size=1)
        self.transactions = Transactions(pool, Outbox(schema, source))
        self.rule = rule
        self.clock = clock

    async def step(self) -> int:
        await service.check(self.transactions, self.rule, self.clock())
        return 0  # one check, then the pause


def leak_rule(runtime: ReportingRuntime) -> Rule:
    s = runtime.settings
    return Rule(
        window_days=s.leak_window_days,
        current_days=s.leak_current_days,
        baseline_days=s.leak_baseline_days,
        min_entered=s.leak_min_entered,
        false_alarm_budget=s.leak_false_alarm_budget,
    )


def leak_watch_worker(runtime: ReportingRuntime) -> Worker:
    settings = runtime.settings
    watch = LeakWatch(
        runtime.pool,
        leak_rule(runtime),
        schema=settings.db_schema,
        source=settings.service_name,
        poll_seconds=settings.leak_check_seconds,
    )
    return watch.worker()
