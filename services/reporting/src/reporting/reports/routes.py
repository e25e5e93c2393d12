"""reporting's report API: the snapshot, the conversion views and the reports beyond the funnel
(JSON, or CSV with format=csv). Parameters are checked before any I/O; a bad one is a 422
naming the field."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from funnel_servicekit.problems import Problem, invalid
from reporting.deps import Reader, Runtime
from reporting.domain.dimensions import Attribution, Breakdown
from reporting.domain.slots import Cohort
from reporting.domain.windows import DEFAULT_WINDOW_DAYS, WINDOW_DAYS
from reporting.reports import live, service
from reporting.reports.models import Period, PeriodError, Report, parse_period

router = APIRouter(tags=["reports"])

FunnelId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
WindowDays = Annotated[
    int,
    Query(description=f"conversion window in days, one of {list(WINDOW_DAYS)}; edge inclusive"),
]
StageName = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Steps = Annotated[
    str | None,
    Query(
        description="comma-separated stages in funnel order (default: every stage)",
        max_length=1000,
    ),
]


async def period_param(
    start: Annotated[date | None, Query(description="first day in tz (default: end - 29)")] = None,
    end: Annotated[
        date | None, Query(description="last day in tz, inclusive (default: today)")
    ] = None,
    tz: Annotated[str, Query(description="IANA time zone of the caller", max_length=64)] = "UTC",
) -> Period:
    try:
        return parse_period(start, end, tz, datetime.now(UTC))
    except PeriodError as exc:
        raise invalid(exc.field, str(exc)) from exc


async def window_param(window_days: WindowDays = DEFAULT_WINDOW_DAYS) -> int:
    if window_days not in WINDOW_DAYS:
        raise invalid("window_days", f"must be one of {', '.join(map(str, WINDOW_DAYS))}")
    return window_days


PeriodParam = Annotated[Period, Depends(period_param)]
WindowParam = Annotated[int, Depends(window_param)]


def answer(report: Report, format: str) -> dict[str, Any] | Response:
    """The report's JSON body, or its table as CSV (the same numbers, one flat row per line)."""
    if format != "csv":
        return report.body
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(report.header)
    for row in report.rows:
        writer.writerow(["" if v is None else v for v in row])
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{report.name}.csv"'},
    )


@router.get("/v1/funnels")
async def list_funnels(runtime: Runtime, _: Reader) -> dict[str, Any]:
    """The funnels reporting has seen events for, with their stages in order."""
    return await service.list_funnels(runtime)


@router.get("/v1/funnels/{funnel_id}/snapshot", response_model=None)
async def get_snapshot(
    funnel_id: FunnelId, runtime: Runtime, _: Reader, format: Format = "json"
) -> dict[str, Any] | Response:
    """How many leads are in each stage of a funnel now."""
    return answer(await service.snapshot(runtime, funnel_id), format)


async def stream_room(runtime: Runtime) -> None:
    """503 when the process serves `snapshot_streams_max` streams already (checked before the
    stream starts: a refusal is a problem, not a broken stream)."""
    if runtime.context.live.watchers >= runtime.settings.snapshot_streams_max:
        raise Problem(
            503,
            "Too many streams",
            "this server has as many snapshot streams open as it serves; retry later",
            type_="urn:funnel:problem:overloaded",
            headers={"Retry-After": "5"},
        )


@router.get(
    "/v1/funnels/{funnel_id}/snapshot/stream",
    response_class=EventSourceResponse,
    dependencies=[Depends(stream_room)],
)
async def stream_snapshot(
    funnel_id: FunnelId, runtime: Runtime, _: Reader
) -> AsyncIterator[ServerSentEvent]:
    """The snapshot as server-sent events: a `snapshot` event (the GET snapshot's JSON) when
    the stream opens, then one each time a committed event changed it. A `: ping` comment
    every 15 s keeps proxies from closing a quiet stream. 503 past `snapshot_streams_max`."""

    async def read() -> dict[str, Any]:
        return (await service.snapshot(runtime, funnel_id)).body

    async for body in live.snapshot_events(runtime.context.live, funnel_id, read):
        yield ServerSentEvent(event="snapshot", raw_data=body)


@router.get("/v1/funnels/{funnel_id}/conversion", response_model=None)
async def get_conversion(
    funnel_id: FunnelId,
    runtime: Runtime,
    _: Reader,
    period: PeriodParam,
    window_days: WindowParam,
    steps: Steps = None,
    cohort: Annotated[Cohort, Query(description="group by entry day/week/month")] = "none",
    breakdown: Annotated[Breakdown | None, Query(description="segment the leads by")] = None,
    attribution: Annotated[Attribution, Query(description="first- or last-touch")] = "first",
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Leads entering the first step in the period, and reaching each later step in the window."""
    report = await service.conversion(
        runtime,
        funnel_id,
        period,
        window_days=window_days,
        steps=steps,
        cohort=cohort,
        breakdown=breakdown,
        attribution=attribution,
    )
    return answer(report, format)


@router.get("/v1/funnels/{funnel_id}/conversion-over-time", response_model=None)
async def get_conversion_over_time(
    funnel_id: FunnelId,
    runtime: Runtime,
    _: Reader,
    period: PeriodParam,
    window_days: WindowParam,
    steps: Steps = None,
    interval: Annotated[Cohort, Query(description="day, week or month")] = "day",
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Conversion from the first to the last step, per entry day, week or month."""
    report = await service.conversion_over_time(
        runtime, funnel_id, period, window_days=window_days, steps=steps, interval=interval
    )
    return answer(report, format)


@router.get("/v1/funnels/{funnel_id}/time-in-stage", response_model=None)
async def get_time_in_stage(
    funnel_id: FunnelId, runtime: Runtime, _: Reader, period: PeriodParam, format: Format = "json"
) -> dict[str, Any] | Response:
    """Median and p90 hours of completed stays, per stage, for stays begun in the period."""
    return answer(await service.time_in_stage(runtime, funnel_id, period), format)


@router.get("/v1/funnels/{funnel_id}/time-to-convert", response_model=None)
async def get_time_to_convert(
    funnel_id: FunnelId,
    runtime: Runtime,
    _: Reader,
    period: PeriodParam,
    from_stage: StageName,
    to_stage: StageName,
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Histogram of the time from entering from_stage to first reaching to_stage."""
    report = await service.time_to_convert(runtime, funnel_id, period, from_stage, to_stage)
    return answer(report, format)


@router.get("/v1/funnels/{funnel_id}/interactions-before-purchase", response_model=None)
async def get_interactions(
    funnel_id: FunnelId, runtime: Runtime, _: Reader, period: PeriodParam, format: Format = "json"
) -> dict[str, Any] | Response:
    """Interactions (submissions, activities, touch opens and clicks) before a first order."""
    return answer(await service.interactions_before_purchase(runtime, funnel_id, period), format)


@router.get("/v1/funnels/{funnel_id}/touch-effectiveness", response_model=None)
async def get_touch_effectiveness(
    funnel_id: FunnelId,
    runtime: Runtime,
    _: Reader,
    period: PeriodParam,
    window_days: WindowParam,
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Orders within N days of a touch at a stage, against leads of that stage without one."""
    report = await service.touch_effectiveness(runtime, funnel_id, period, window_days)
    return answer(report, format)


@router.get("/v1/funnels/{funnel_id}/revenue", response_model=None)
async def get_revenue(
    funnel_id: FunnelId,
    runtime: Runtime,
    _: Reader,
    period: PeriodParam,
    breakdown: Annotated[Breakdown | None, Query(description="source, medium or campaign")] = None,
    attribution: Annotated[Attribution, Query(description="first- or last-touch")] = "first",
    interval: Annotated[
        Cohort | None,
        Query(description="day, week or month of the series (default day); the CSV is then it"),
    ] = None,
    format: Format = "json",
) -> dict[str, Any] | Response:
    """Lifetime net revenue, LTV and repeat-purchase rate, per currency, by source or campaign,
    and the period's revenue, orders, refunds, new and repeat customers per interval."""
    report = await service.revenue(
        runtime,
        funnel_id,
        breakdown=breakdown,
        attribution=attribution,
        period=period,
        interval=interval,
    )
    return answer(report, format)


@router.get("/v1/funnels/{funnel_id}/subscriptions", response_model=None)
async def get_subscriptions(
    funnel_id: FunnelId,
    runtime: Runtime,
    _: Reader,
    period: PeriodParam,
    interval: Annotated[Cohort, Query(description="day, week or month")] = "month",
    format: Format = "json",
) -> dict[str, Any] | Response:
    """MRR, subscribers, new subscriptions, cancellations and churn per interval."""
    return answer(await service.subscriptions(runtime, funnel_id, period, interval), format)
