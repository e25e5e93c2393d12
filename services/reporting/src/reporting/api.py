"""reporting's HTTP API: the snapshot and the conversion views (JSON, or CSV with format=csv)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from reporting import projection, queries
from reporting.csv_export import csv_response
from reporting.domain.answers import conversion_groups, rate
from reporting.domain.dimensions import Attribution, Breakdown
from reporting.report_params import (
    Format,
    FunnelId,
    PeriodParam,
    Reader,
    WindowParam,
    invalid,
)

router = APIRouter(tags=["reports"])

Steps = Annotated[
    str | None,
    Query(
        description="comma-separated stages in funnel order (default: every stage)",
        max_length=1000,
    ),
]
BreakdownParam = Annotated[Breakdown | None, Query(description="segment the leads by")]
AttributionParam = Annotated[Attribution, Query(description="first- or last-touch")]


@router.get("/v1/funnels")
async def list_funnels(request: Request, _: Reader) -> dict[str, Any]:
    """The funnels reporting has seen events for, with their stages in order."""
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT funnel_id, stage, position FROM funnel_stages ORDER BY funnel_id, position"
        )
    funnels: dict[str, list[str]] = {}
    for r in rows:
        funnels.setdefault(r["funnel_id"], []).append(r["stage"])
    return {"funnels": [{"funnel_id": f, "stages": s} for f, s in funnels.items()]}


@router.get("/v1/funnels/{funnel_id}/snapshot", response_model=None)
async def get_snapshot(
    funnel_id: FunnelId, request: Request, _: Reader, format: Format = "json"
) -> dict[str, Any] | Response:
    """How many leads are in each stage of a funnel now."""
    async with request.app.state.runtime.pool.acquire() as conn:
        body = await projection.snapshot(conn, funnel_id)
    if format == "csv":
        rows = [(s["stage"], s["position"], s["leads"]) for s in body["stages"]]
        return csv_response(f"{funnel_id}-snapshot", ("stage", "position", "leads"), rows)
    return body


async def _steps(conn: Any, funnel_id: str, steps: str | None) -> list[str]:
    known = await queries.funnel_stages(conn, funnel_id)
    if steps is None:
        chosen = list(known)
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


@router.get("/v1/funnels/{funnel_id}/conversion", response_model=None)
async def get_conversion(
    funnel_id: FunnelId,
    request: Request,
    _: Reader,
    period: PeriodParam,
    window_days: WindowParam,
    steps: Steps = None,
    cohort: Annotated[queries.Cohort, Query(description="group by entry day/week/month")] = "none",
    breakdown: BreakdownParam = None,
    attribution: AttributionParam = "first",
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Leads entering the first step in the period, and reaching each later step in the window."""
    async with request.app.state.runtime.pool.acquire() as conn:
        chosen = await _steps(conn, funnel_id, steps)
        entered, reached = await queries.conversion_counts(
            conn,
            funnel_id,
            chosen,
            period,
            window_days=window_days,
            cohort=cohort,
            dim=queries.dimension(breakdown, attribution),
        )
    groups = conversion_groups(chosen, entered, reached)
    if format == "csv":
        header = (
            "cohort",
            "segment",
            "step",
            "stage",
            "leads",
            "conversion_from_previous",
            "conversion_from_first",
            "drop_off",
        )
        rows = [
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
        return csv_response(f"{funnel_id}-conversion", header, rows)
    return {
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


@router.get("/v1/funnels/{funnel_id}/conversion-over-time", response_model=None)
async def get_conversion_over_time(
    funnel_id: FunnelId,
    request: Request,
    _: Reader,
    period: PeriodParam,
    window_days: WindowParam,
    steps: Steps = None,
    interval: Annotated[queries.Cohort, Query(description="day, week or month")] = "day",
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Conversion from the first to the last step, per entry day, week or month."""
    if interval == "none":
        raise invalid("interval", "choose day, week or month")
    async with request.app.state.runtime.pool.acquire() as conn:
        chosen = await _steps(conn, funnel_id, steps)
        entered, reached = await queries.conversion_counts(
            conn,
            funnel_id,
            [chosen[0], chosen[-1]],
            period,
            window_days=window_days,
            cohort=interval,
            dim="all",
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
    if format == "csv":
        rows = [(p["period"], p["entered"], p["converted"], p["conversion"]) for p in series]
        header = ("period", "entered", "converted", "conversion")
        return csv_response(f"{funnel_id}-conversion-over-time", header, rows)
    return {
        "funnel_id": funnel_id,
        "from_stage": chosen[0],
        "to_stage": chosen[-1],
        "interval": interval,
        "time_zone": period.time_zone,
        "window_days": window_days,
        "series": series,
    }
