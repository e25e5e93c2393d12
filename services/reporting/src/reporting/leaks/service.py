"""The leak check (one unit of work: read the step counts, open and resolve leaks, emit
their events through the outbox), and the leaks of a funnel as the API shows them."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from funnel_contracts import LeakDetected, LeakResolved
from funnel_servicekit.unit_of_work import Transactions
from reporting.leaks import store
from reporting.leaks.models import Counts, Rule, leaking, recovered
from reporting.reports.models import Period
from reporting.runtime import ReportingRuntime

RECENT = timedelta(days=30)  # resolved leaks the API still lists


def _rate(counts: Counts) -> float:
    return round(counts.rate, 4)


async def check(tx: Transactions, rule: Rule, now: datetime) -> dict[str, int]:
    """Test every consecutive step of every funnel, overall and per source; open a leak for
    each significant drop (funnel.leak.detected.v1) and resolve each open leak whose step
    recovered (funnel.leak.resolved.v1). Returns how many were opened and resolved."""
    today = now.astimezone(UTC).date()
    (b_start, b_end), (c_start, c_end) = rule.periods(today)
    baseline_period = Period(b_start, b_end, "UTC")
    current_period = Period(c_start, c_end, "UTC")
    opened = resolved = 0
    async with tx() as uow:
        conn = uow.conn
        await store.lock_the_watch(conn)
        funnels = await store.funnels(conn)
        steps: dict[tuple[str, str, str, str], tuple[Counts, Counts]] = {}
        for funnel_id, stages in funnels.items():
            for from_stage, to_stage in itertools.pairwise(stages):
                before = await store.step_counts(
                    conn, funnel_id, from_stage, to_stage, baseline_period, rule.window_days
                )
                recent = await store.step_counts(
                    conn, funnel_id, from_stage, to_stage, current_period, rule.window_days
                )
                for segment in before.keys() | recent.keys():
                    steps[(funnel_id, from_stage, to_stage, segment)] = (
                        before.get(segment, Counts(0, 0)),
                        recent.get(segment, Counts(0, 0)),
                    )
        for leak in await store.open_leaks(conn):
            key = (leak["funnel_id"], leak["from_stage"], leak["to_stage"], leak["segment"])
            baseline = Counts(leak["baseline_entered"], leak["baseline_converted"])
            current = steps.get(key, (baseline, Counts(0, 0)))[1]
            done, p = recovered(rule, baseline, current)
            await store.update_leak(conn, leak["leak_id"], current, p, now, resolved=done)
            if done:
                resolved += 1
                await uow.emit(
                    LeakResolved(
                        lead_id=leak["leak_id"],
                        leak_id=leak["leak_id"],
                        funnel_id=leak["funnel_id"],
                        from_stage=leak["from_stage"],
                        to_stage=leak["to_stage"],
                        segment=leak["segment"],
                        baseline_rate=_rate(baseline),
                        current_rate=_rate(current),
                        p_value=min(max(p, 0.0), 1.0),
                        resolved_at=now,
                    )
                )
        by_funnel: dict[str, dict[tuple[str, str, str], tuple[Counts, Counts]]] = {}
        for (funnel_id, *rest), counts in steps.items():
            by_funnel.setdefault(funnel_id, {})[(rest[0], rest[1], rest[2])] = counts
        for funnel_id, funnel_steps in sorted(by_funnel.items()):
            for finding in leaking(rule, funnel_steps):
                leak_id = uuid.uuid4()
                if not await store.open_leak(
                    conn, leak_id, funnel_id, finding, rule.window_days, now
                ):
                    continue  # already open: the latest check updated it above
                opened += 1
                from_stage, to_stage, segment = finding.key
                await uow.emit(
                    LeakDetected(
                        lead_id=leak_id,
                        leak_id=leak_id,
                        funnel_id=funnel_id,
                        from_stage=from_stage,
                        to_stage=to_stage,
                        segment=segment,
                        window_days=rule.window_days,
                        baseline_rate=_rate(finding.baseline),
                        baseline_entered=finding.baseline.entered,
                        baseline_converted=finding.baseline.converted,
                        current_rate=_rate(finding.current),
                        current_entered=finding.current.entered,
                        current_converted=finding.current.converted,
                        p_value=finding.p_value,
                        detected_at=now,
                    )
                )
    return {"opened": opened, "resolved": resolved}


async def leaks(runtime: ReportingRuntime, funnel_id: str, now: datetime) -> dict[str, Any]:
    async with runtime.pool.acquire() as conn:
        rows = await store.leaks_of(conn, funnel_id, now - RECENT)
    items = [
        {
            "leak_id": str(r["leak_id"]),
            "from_stage": r["from_stage"],
            "to_stage": r["to_stage"],
            "segment": r["segment"],
            "window_days": r["window_days"],
            "baseline_rate": _rate(Counts(r["baseline_entered"], r["baseline_converted"])),
            "baseline_entered": r["baseline_entered"],
            "current_rate": _rate(Counts(r["current_entered"], r["current_converted"])),
            "current_entered": r["current_entered"],
            "p_value": r["p_value"],
            "opened_at": r["opened_at"].isoformat(),
            "resolved_at": r["resolved_at"].isoformat() if r["resolved_at"] else None,
            "checked_at": r["checked_at"].isoformat(),
        }
        for r in rows
    ]
    return {"funnel_id": funnel_id, "items": items}
