"""The reports: the funnel's snapshot and conversion, and the reports beyond it (time in stage,
time to convert, interactions before purchase, touch effectiveness, revenue, LTV and repeat
purchase). Each reads the aggregates on a pooled connection and answers a `Report`: its JSON
body and the same numbers as a flat table."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import asyncpg

from funnel_servicekit.problems import invalid
from reporting.domain.dimensions import (
    ALL,
    BASELINE,
    OFFLINE,
    REVENUE_BREAKDOWNS,
    Attribution,
    Breakdown,
    dimension,
)
from reporting.domain.exits import EXITS
from reporting.domain.slots import Cohort
from reporting.domain.windows import WINDOW_COLUMNS, delay_bucket_labels
from reporting.reports import store
from reporting.reports.models import Period, Report, conversion_groups, percentile_hours, rate
from reporting.runtime import ReportingRuntime


async def list_funnels(runtime: ReportingRuntime) -> dict[str, Any]:
    async with runtime.pool.acquire() as conn:
        funnels = await store.funnels(conn)
    return {"funnels": [{"funnel_id": f, "stages": s} for f, s in funnels.items()]}


async def snapshot(runtime: ReportingRuntime, funnel_id: str) -> Report:
    async with runtime.pool.acquire() as conn:
        rows = await store.stage_counts(conn, funnel_id)
    stages = [{"stage": r["stage"], "position": r["position"], "leads": r["leads"]} for r in rows]
    body = {"funnel_id": funnel_id, "total": sum(s["leads"] for s in stages), "stages": stages}
    table = [(s["stage"], s["position"], s["leads"]) for s in stages]
    return Report(f"{funnel_id}-snapshot", body, ("stage", "position", "leads"), table)


async def _steps(conn: asyncpg.Connection, funnel_id: str, steps: str | None) -> list[str]:
    """The chosen stages (default: the funnel's line, its exits left out), checked to be
    known, distinct and in funnel order."""
    known = await store.funnel_stages(conn, funnel_id)
    if steps is None:
        chosen = [s for s in known if s not in EXITS]
    else:
        chosen = [s.strip() for s in steps.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in known]
        if unknown:
            raise invalid("steps", f"not a stage of {funnel_id}: {', '.join(unknown)}")
    if len(chosen) < 2:
        raise invalid("steps", "choose at least two stages (the funnel may have no data yet)")
    positions = [known[s] for s in chosen]
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise invalid("steps", "stages must be distinct and in funnel order")
    return chosen


_CONVERSION_HEADER = (
    "cohort",
    "segment",
    "step",
    "stage",
    "leads",
    "conversion_from_previous",
    "conversion_from_first",
    "drop_off",
)


async def conversion(
    runtime: ReportingRuntime,
    funnel_id: str,
    period: Period,
    *,
    window_days: int,
    steps: str | None,
    cohort: Cohort,
    breakdown: Breakdown | None,
    attribution: Attribution,
) -> Report:
    """Leads entering the first step in the period, and reaching each later step in the window."""
    async with runtime.pool.acquire() as conn:
        chosen = await _steps(conn, funnel_id, steps)
        entered, reached = await store.conversion_counts(
            conn,
            funnel_id,
            chosen,
            period,
            window_days=window_days,
            cohort=cohort,
            dim=dimension(breakdown, attribution),
        )
    groups = conversion_groups(chosen, entered, reached)
    body = {
        "funnel_id": funnel_id,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "time_zone": period.time_zone,
        "window_days": window_days,
        "steps": chosen,
        "cohort": cohort,
        "breakdown": breakdown,
        "attribution": attribution if breakdown else None,
        "groups": groups,
    }
    table = [
        (
            g["cohort"],
            g["segment"],
            i + 1,
            s["stage"],
            s["leads"],
            s["conversion_from_previous"],
            s["conversion_from_first"],
            s["drop_off"],
        )
        for g in groups
        for i, s in enumerate(g["steps"])
    ]
    return Report(f"{funnel_id}-conversion", body, _CONVERSION_HEADER, table)


async def conversion_over_time(
    runtime: ReportingRuntime,
    funnel_id: str,
    period: Period,
    *,
    window_days: int,
    steps: str | None,
    interval: Cohort,
) -> Report:
    """Conversion from the first to the last step, per entry day, week or month."""
    if interval == "none":
        raise invalid("interval", "choose day, week or month")
    async with runtime.pool.acquire() as conn:
        chosen = await _steps(conn, funnel_id, steps)
        entered, reached = await store.conversion_counts(
            conn,
            funnel_id,
            [chosen[0], chosen[-1]],
            period,
            window_days=window_days,
            cohort=interval,
            dim=ALL[0],
        )
    series = [
        {
            "period": cohort,
            "entered": n,
            "converted": reached.get((cohort, None, chosen[-1]), 0),
            "conversion": rate(reached.get((cohort, None, chosen[-1]), 0), n),
        }
        for (cohort, _segment), n in sorted(entered.items(), key=lambda kv: kv[0][0] or "")
    ]
    body = {
        "funnel_id": funnel_id,
        "from_stage": chosen[0],
        "to_stage": chosen[-1],
        "interval": interval,
        "time_zone": period.time_zone,
        "window_days": window_days,
        "series": series,
    }
    header = ("period", "entered", "converted", "conversion")
    table = [(p["period"], p["entered"], p["converted"], p["conversion"]) for p in series]
    return Report(f"{funnel_id}-conversion-over-time", body, header, table)


async def time_in_stage(runtime: ReportingRuntime, funnel_id: str, period: Period) -> Report:
    """Median and p90 hours of completed stays, per stage, for stays begun in the period."""
    async with runtime.pool.acquire() as conn:
        order = await store.funnel_stages(conn, funnel_id)
        stays = await store.stage_stays(conn, funnel_id, period)
    stages = [
        {
            "stage": stage,
            "stays": sum(buckets.values()),
            "median_hours": percentile_hours(buckets, 0.5),
            "p90_hours": percentile_hours(buckets, 0.9),
        }
        for stage, buckets in sorted(stays.items(), key=lambda kv: (order.get(kv[0], 999), kv[0]))
    ]
    body = {"funnel_id": funnel_id, "time_zone": period.time_zone, "stages": stages}
    header = ("stage", "stays", "median_hours", "p90_hours")
    table = [(s["stage"], s["stays"], s["median_hours"], s["p90_hours"]) for s in stages]
    return Report(f"{funnel_id}-time-in-stage", body, header, table)


async def time_to_convert(
    runtime: ReportingRuntime, funnel_id: str, period: Period, from_stage: str, to_stage: str
) -> Report:
    """Histogram of the time from entering from_stage to first reaching to_stage."""
    async with runtime.pool.acquire() as conn:
        row = await store.time_to_convert(conn, funnel_id, from_stage, to_stage, period)
    cumulative = [row[c] for c in WINDOW_COLUMNS]
    counts = [cumulative[0]] + [b - a for a, b in itertools.pairwise(cumulative)]
    buckets = [
        {"bucket": label, "leads": n}
        for label, n in zip(delay_bucket_labels(), counts, strict=True)
    ]
    body = {
        "funnel_id": funnel_id,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "entered": row["entered"],
        "converted": cumulative[-1],
        "buckets": buckets,
    }
    table = [(b["bucket"], b["leads"]) for b in buckets]
    return Report(f"{funnel_id}-time-to-convert", body, ("bucket", "leads"), table)


async def interactions_before_purchase(
    runtime: ReportingRuntime, funnel_id: str, period: Period
) -> Report:
    """Interactions (submissions, activities, touch opens and clicks) before a first order."""
    async with runtime.pool.acquire() as conn:
        rows = await store.interactions_before_purchase(conn, funnel_id, period)
    buyers = sum(int(r["buyers"]) for r in rows)
    total = sum(int(r["total"]) for r in rows)
    histogram = [{"interactions": r["interactions"], "buyers": int(r["buyers"])} for r in rows]
    average = None if buyers == 0 else round(total / buyers, 2)
    body = {"funnel_id": funnel_id, "buyers": buyers, "average": average, "histogram": histogram}
    table = [(h["interactions"], h["buyers"]) for h in histogram]
    return Report(f"{funnel_id}-interactions", body, ("interactions", "buyers"), table)


async def touch_effectiveness(
    runtime: ReportingRuntime, funnel_id: str, period: Period, window_days: int
) -> Report:
    """Orders within N days of a touch at a stage, against leads of that stage without one."""
    async with runtime.pool.acquire() as conn:
        rows = await store.touch_effect(conn, funnel_id, period, window_days)
    baseline = {r["stage"]: r for r in rows if r["playbook"] == BASELINE}
    touches = []
    for r in rows:
        if r["playbook"] == BASELINE:
            continue
        base = baseline.get(r["stage"])
        touched_rate = rate(int(r["converted"]), int(r["leads"]))
        base_rate = rate(int(base["converted"]), int(base["leads"])) if base else None
        touches.append(
            {
                "stage": r["stage"],
                "playbook": r["playbook"],
                "channel": "offline" if r["playbook"].startswith(OFFLINE) else "online",
                "leads": int(r["leads"]),
                "converted": int(r["converted"]),
                "conversion": touched_rate,
                "baseline_leads": int(base["leads"]) if base else 0,
                "baseline_converted": int(base["converted"]) if base else 0,
                "baseline_conversion": base_rate,
                "lift": None
                if touched_rate is None or not base_rate
                else round(touched_rate / base_rate, 4),
            }
        )
    body = {"funnel_id": funnel_id, "window_days": window_days, "touches": touches}
    header = tuple(touches[0]) if touches else ("stage", "playbook", "leads", "converted")
    table = [tuple(t.values()) for t in touches]
    return Report(f"{funnel_id}-touch-effectiveness", body, header, table)


async def revenue(
    runtime: ReportingRuntime,
    funnel_id: str,
    *,
    breakdown: Breakdown | None,
    attribution: Attribution,
    period: Period,
    interval: Cohort | None,
) -> Report:
    """Lifetime net revenue, LTV and repeat-purchase rate, per currency, by source or campaign
    (`segments`), and the period's revenue per day, week or month in its zone (`series`).
    The CSV is the series when an interval was asked for, else the segments."""
    if breakdown is not None and breakdown not in REVENUE_BREAKDOWNS:
        raise invalid("breakdown", "revenue is broken down by source, medium or campaign")
    if interval == "none":
        raise invalid("interval", "choose day, week or month")
    async with runtime.pool.acquire() as conn:
        rows = await store.revenue(conn, funnel_id, dimension(breakdown, attribution))
        timed = await store.revenue_series(conn, funnel_id, period, interval or "day")
    series = [
        {
            "period": r["period"],
            "currency": r["currency"],
            "revenue": str(r["revenue"]),
            "orders": int(r["orders"]),
            "refunds": int(r["refunds"]),
            "new_customers": int(r["new_customers"]),
            "repeat_customers": int(r["repeat_customers"]),
        }
        for r in timed
    ]
    segments = [
        {
            "segment": r["value"] if breakdown else None,
            "currency": r["currency"],
            "revenue": str(r["revenue"]),
            "orders": int(r["orders"]),
            "refunds": int(r["refunds"]),
            "customers": int(r["customers"]),
            "ltv": str(_ltv(r["revenue"], int(r["customers"]))),
            "repeat_purchase_rate": rate(
                int(r["repeat_customers"] or 0), int(r["all_customers"] or 0)
            ),
        }
        for r in rows
    ]
    body = {
        "funnel_id": funnel_id,
        "breakdown": breakdown,
        "segments": segments,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "time_zone": period.time_zone,
        "interval": interval or "day",
        "series": series,
    }
    if interval is not None:
        return Report(
            f"{funnel_id}-revenue-by-{interval}",
            body,
            SERIES_HEADER,
            [tuple(s.values()) for s in series],
        )
    header = tuple(segments[0]) if segments else ("segment", "currency", "revenue")
    table = [tuple(s.values()) for s in segments]
    return Report(f"{funnel_id}-revenue", body, header, table)


SERIES_HEADER = (
    "period",
    "currency",
    "revenue",
    "orders",
    "refunds",
    "new_customers",
    "repeat_customers",
)
SUBSCRIPTION_HEADER = (
    "period",
    "currency",
    "mrr",
    "subscribers",
    "new_subscribers",
    "cancellations",
    "churn_rate",
)


async def subscriptions(
    runtime: ReportingRuntime, funnel_id: str, period: Period, interval: Cohort
) -> Report:
    """MRR and subscribers at the end of each day, week or month of the period, the new
    subscriptions and cancellations in it, and churn: cancellations over the subscribers at
    its start (null when there were none)."""
    if interval == "none":
        raise invalid("interval", "choose day, week or month")
    async with runtime.pool.acquire() as conn:
        rows = await store.subscription_series(conn, funnel_id, period, interval)
    series = [
        {
            "period": r["period"],
            "currency": r["currency"],
            "mrr": str(r["mrr"]),
            "subscribers": int(r["subscribers"]),
            "new_subscribers": int(r["new_subscribers"]),
            "cancellations": int(r["cancellations"]),
            "churn_rate": rate(int(r["cancellations"]), int(r["subscribers_at_start"])),
        }
        for r in rows
    ]
    body = {
        "funnel_id": funnel_id,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "time_zone": period.time_zone,
        "interval": interval,
        "series": series,
    }
    table = [tuple(s.values()) for s in series]
    return Report(f"{funnel_id}-subscriptions-by-{interval}", body, SUBSCRIPTION_HEADER, table)


def _ltv(revenue: Decimal, customers: int) -> Decimal:
    """Net revenue per customer, to the cent."""
    return Decimal(0) if customers == 0 else (revenue / customers).quantize(Decimal("0.01"))
