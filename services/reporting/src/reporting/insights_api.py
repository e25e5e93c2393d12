"""Reports beyond the funnel: time in stage, time to convert, interactions before purchase,
touch effectiveness, revenue, LTV and repeat purchase (JSON, or CSV with format=csv)."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from reporting import queries
from reporting.csv_export import csv_response
from reporting.domain.answers import percentile_hours, rate
from reporting.domain.contributions import BASELINE
from reporting.domain.dimensions import REVENUE_BREAKDOWNS, Attribution, Breakdown
from reporting.domain.windows import WINDOW_COLUMNS, delay_bucket_labels
from reporting.report_params import (
    Format,
    FunnelId,
    PeriodParam,
    Reader,
    StageName,
    WindowParam,
    invalid,
)

router = APIRouter(tags=["reports"])


@router.get("/v1/funnels/{funnel_id}/time-in-stage", response_model=None)
async def get_time_in_stage(
    funnel_id: FunnelId, request: Request, _: Reader, period: PeriodParam, format: Format = "json"
) -> dict[str, Any] | Response:
    """Median and p90 hours of completed stays, per stage, for stays begun in the period."""
    async with request.app.state.runtime.pool.acquire() as conn:
        order = await queries.funnel_stages(conn, funnel_id)
        stays = await queries.stage_stays(conn, funnel_id, period)
    stages = [
        {
            "stage": stage,
            "stays": sum(buckets.values()),
            "median_hours": percentile_hours(buckets, 0.5),
            "p90_hours": percentile_hours(buckets, 0.9),
        }
        for stage, buckets in sorted(stays.items(), key=lambda kv: (order.get(kv[0], 999), kv[0]))
    ]
    if format == "csv":
        rows = [(s["stage"], s["stays"], s["median_hours"], s["p90_hours"]) for s in stages]
        header = ("stage", "stays", "median_hours", "p90_hours")
        return csv_response(f"{funnel_id}-time-in-stage", header, rows)
    return {"funnel_id": funnel_id, "time_zone": period.time_zone, "stages": stages}


@router.get("/v1/funnels/{funnel_id}/time-to-convert", response_model=None)
async def get_time_to_convert(
    funnel_id: FunnelId,
    request: Request,
    _: Reader,
    period: PeriodParam,
    from_stage: StageName,
    to_stage: StageName,
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Histogram of the time from entering from_stage to first reaching to_stage."""
    async with request.app.state.runtime.pool.acquire() as conn:
        row = await queries.time_to_convert(conn, funnel_id, from_stage, to_stage, period)
    cumulative = [row[c] for c in WINDOW_COLUMNS]
    entered = row["entered"]
    counts = [cumulative[0]] + [b - a for a, b in itertools.pairwise(cumulative)]
    buckets = [
        {"bucket": label, "leads": n}
        for label, n in zip(delay_bucket_labels(), counts, strict=True)
    ]
    if format == "csv":
        rows = [(b["bucket"], b["leads"]) for b in buckets]
        return csv_response(f"{funnel_id}-time-to-convert", ("bucket", "leads"), rows)
    return {
        "funnel_id": funnel_id,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "entered": entered,
        "converted": cumulative[-1],
        "buckets": buckets,
    }


@router.get("/v1/funnels/{funnel_id}/interactions-before-purchase", response_model=None)
async def get_interactions(
    funnel_id: FunnelId, request: Request, _: Reader, period: PeriodParam, format: Format = "json"
) -> dict[str, Any] | Response:
    """Interactions (submissions, activities, touch opens and clicks) before a first order."""
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.interactions_before_purchase(conn, funnel_id, period)
    buyers = sum(int(r["buyers"]) for r in rows)
    total = sum(int(r["total"]) for r in rows)
    histogram = [{"interactions": r["interactions"], "buyers": int(r["buyers"])} for r in rows]
    if format == "csv":
        csv_rows = [(h["interactions"], h["buyers"]) for h in histogram]
        return csv_response(f"{funnel_id}-interactions", ("interactions", "buyers"), csv_rows)
    average = None if buyers == 0 else round(total / buyers, 2)
    return {"funnel_id": funnel_id, "buyers": buyers, "average": average, "histogram": histogram}


@router.get("/v1/funnels/{funnel_id}/touch-effectiveness", response_model=None)
async def get_touch_effectiveness(
    funnel_id: FunnelId,
    request: Request,
    _: Reader,
    period: PeriodParam,
    window_days: WindowParam,
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Orders within N days of a touch at a stage, against leads of that stage without one."""
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.touch_effect(conn, funnel_id, period, window_days)
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
    if format == "csv":
        header = tuple(touches[0]) if touches else ("stage", "playbook", "leads", "converted")
        return csv_response(
            f"{funnel_id}-touch-effectiveness", header, [tuple(t.values()) for t in touches]
        )
    return {"funnel_id": funnel_id, "window_days": window_days, "touches": touches}


@router.get("/v1/funnels/{funnel_id}/revenue", response_model=None)
async def get_revenue(
    funnel_id: FunnelId,
    request: Request,
    _: Reader,
    breakdown: Annotated[Breakdown | None, Query(description="source, medium or campaign")] = None,
    attribution: Annotated[Attribution, Query(description="first- or last-touch")] = "first",
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Lifetime net revenue, LTV and repeat-purchase rate, per currency, by source or campaign."""
    if breakdown is not None and breakdown not in REVENUE_BREAKDOWNS:
        raise invalid("breakdown", "revenue is broken down by source, medium or campaign")
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.revenue(conn, funnel_id, queries.dimension(breakdown, attribution))
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
    if format == "csv":
        header = tuple(segments[0]) if segments else ("segment", "currency", "revenue")
        return csv_response(f"{funnel_id}-revenue", header, [tuple(s.values()) for s in segments])
    return {"funnel_id": funnel_id, "breakdown": breakdown, "segments": segments}


def _ltv(revenue: Decimal, customers: int) -> Decimal:
    """Net revenue per customer, to the cent."""
    return Decimal(0) if customers == 0 else (revenue / customers).quantize(Decimal("0.01"))
