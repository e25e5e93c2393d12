"""The reports' pure part: a report's period, the arithmetic of the answers (rates,
drop-off, percentiles from buckets), and the shape of an answer. No I/O here.

A period is whole days in the caller's time zone, turned into UTC instants. Aggregates are
keyed by UTC quarter hour, so a period or a day/week/month bucket is exact in every zone whose
midnights fall on a quarter hour of UTC: every IANA zone since 1972 (India's +05:30, Nepal's
+05:45, Adelaide's +09:30 and Newfoundland's -03:30 among them). A period reaching back to a
local mean time off the quarter (Liberia's -00:44:30 before 1972) is refused rather than
answered approximately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reporting.domain.windows import MORE_THAN_90_DAYS

MAX_DAYS = 800


class PeriodError(ValueError):
    """A period the reports cannot answer exactly; `field` names the query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive
    time_zone: str

    @property
    def utc_from(self) -> datetime:
        return _local_midnight(self.start, self.zone)

    @property
    def utc_to(self) -> datetime:
        return _local_midnight(self.end + timedelta(days=1), self.zone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def parse_period(start: date | None, end: date | None, tz: str, now: datetime) -> Period:
    """Default: the last 30 days up to today (inclusive) in the caller's zone."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PeriodError("tz", f"unknown time zone {tz!r}") from exc
    end = end or now.astimezone(zone).date()
    start = start or end - timedelta(days=29)
    if start > end:
        raise PeriodError("start", "start must not be after end")
    if (end - start).days > MAX_DAYS:
        raise PeriodError("start", f"a period spans at most {MAX_DAYS} days")
    day = start
    while day <= end + timedelta(days=1):
        midnight = _local_midnight(day, zone)
        if midnight.minute % 15 or midnight.second or midnight.microsecond:
            raise PeriodError("tz", f"{tz}'s midnight of {day} is not on a quarter hour of UTC")
        day += timedelta(days=1)
    return Period(start, end, tz)


@dataclass(frozen=True)
class Report:
    """A report's answer: its JSON body, and the same numbers as one flat row per line."""

    name: str  # the CSV file's name, without .csv
    body: dict[str, Any]
    header: Sequence[str]
    rows: list[tuple[Any, ...]]


GroupKey = tuple[str | None, str | None]  # (cohort, segment)


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def funnel_steps(stages: Sequence[str], counts: Sequence[int]) -> list[dict[str, Any]]:
    """Each step with its conversion from the previous and the first, and the drop-off."""
    steps = []
    for i, (stage, leads) in enumerate(zip(stages, counts, strict=True)):
        previous = counts[i - 1] if i else leads
        steps.append(
            {
                "stage": stage,
                "leads": leads,
                "conversion_from_previous": rate(leads, previous) if i else None,
                "conversion_from_first": rate(leads, counts[0]) if i else None,
                "drop_off": previous - leads if i else None,
                "drop_off_rate": rate(previous - leads, previous) if i else None,
            }
        )
    return steps


def conversion_groups(
    stages: Sequence[str],
    entered: Mapping[GroupKey, int],
    reached: Mapping[tuple[str | None, str | None, str], int],
) -> list[dict[str, Any]]:
    """One group per (cohort, segment) with its steps; groups ordered by cohort then size."""
    groups: list[dict[str, Any]] = []
    sizes: list[tuple[str, int, str]] = []
    for cohort, segment in entered:
        counts = [entered[(cohort, segment)]]
        counts += [reached.get((cohort, segment, stage), 0) for stage in stages[1:]]
        steps = funnel_steps(stages, counts)
        sizes.append((cohort or "", -counts[0], segment or ""))
        groups.append(
            {
                "cohort": cohort,
                "segment": segment,
                "steps": steps,
                "overall_conversion": rate(counts[-1], counts[0]),
            }
        )
    order = sorted(range(len(groups)), key=lambda i: sizes[i])
    return [groups[i] for i in order]


def percentile_hours(buckets: Mapping[int, int], fraction: float) -> int | None:
    """Upper edge (hours) of the bucket holding the given fraction of stays; None if none,
    or if it lies beyond 90 days."""
    total = sum(buckets.values())
    if total == 0:
        return None
    seen = 0
    for upper in sorted(buckets):
        seen += buckets[upper]
        if seen >= fraction * total:
            return None if upper == MORE_THAN_90_DAYS else upper
    return None  # unreachable: the last bucket brings `seen` to `total`
