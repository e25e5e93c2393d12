"""A report's period: whole days in the caller's time zone, turned into UTC instants (pure).

Aggregates are keyed by UTC hour, so a period or a day/week/month bucket is exact in every
zone whose offset is a whole number of hours over the period; other zones (India's +05:30,
Nepal's +05:45) are refused rather than answered approximately.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    day = start - timedelta(days=1)
    while day <= end + timedelta(days=1):
        offset = datetime.combine(day, time(12), tzinfo=zone).utcoffset() or timedelta()
        if offset.total_seconds() % 3600:
            raise PeriodError("tz", f"{tz} is not a whole number of hours from UTC")
        day += timedelta(days=1)
    return Period(start, end, tz)
