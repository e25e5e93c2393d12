"""Query parameters shared by the reports, and the 422s that name the field at fault."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import Depends, Path, Query

from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.problems import Problem
from reporting.domain.period import Period, PeriodError, parse_period
from reporting.domain.windows import DEFAULT_WINDOW_DAYS, WINDOW_DAYS

FunnelId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Reader = Annotated[Principal, Depends(require_scopes("reports:read"))]
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
WindowDays = Annotated[
    int,
    Query(description=f"conversion window in days, one of {list(WINDOW_DAYS)}; edge inclusive"),
]
StageName = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


def invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "Invalid request",
        f"{field}: {message}",
        type_="urn:funnel:problem:validation",
        errors=[{"field": field, "message": message, "code": "value_error"}],
    )


def period_param(
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


def window_param(window_days: WindowDays = DEFAULT_WINDOW_DAYS) -> int:
    if window_days not in WINDOW_DAYS:
        raise invalid("window_days", f"must be one of {', '.join(map(str, WINDOW_DAYS))}")
    return window_days


PeriodParam = Annotated[Period, Depends(period_param)]
WindowParam = Annotated[int, Depends(window_param)]
