"""Which pre-aggregated rows answer a range of UTC quarter hours, reading as few as possible
(pure).

The two tables a conversion question reads are kept per UTC quarter hour and rolled up by
hour, 6 hours, UTC day and week (from Monday, UTC). A range is answered by the whole weeks
inside it, its edges by whole days, then 6-hour blocks, hours and quarters, and an edge that is
most of a bucket by the bucket minus the part outside (a day minus 6 + 1 hours, not 17 hours).
The counters are sums, so the signed rows add up to exactly the quarters of the range; the
number of rows read follows the range's shape and the breakdown's values, never the number of
leads. Quarters make every zone's days exact (India's +05:30, Nepal's +05:45); an hourly
zone's period never reads a quarter row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Cohort = Literal["none", "day", "week", "month"]
QUARTER, HOUR, SIX_HOURS = timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6)
DAY, WEEK = timedelta(days=1), timedelta(weeks=1)
# Bucket sizes, finest first: the index is the `level` of a Slot.
LEVELS = (QUARTER, HOUR, SIX_HOURS, DAY, WEEK)
# A Monday at midnight UTC: every level's buckets are aligned on it (as date_trunc('week')).
_ORIGIN = datetime(2001, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Slot:
    """The rows of one level with start <= hour < end, added (sign 1) or taken away (-1)."""

    level: int
    start: datetime
    end: datetime
    sign: int

    @property
    def buckets(self) -> int:
        return (self.end - self.start) // LEVELS[self.level]


def floor(at: datetime, size: timedelta) -> datetime:
    return _ORIGIN + ((at - _ORIGIN) // size) * size


def ceil(at: datetime, size: timedelta) -> datetime:
    down = floor(at, size)
    return down if down == at else down + size


def _cost(slots: list[Slot]) -> int:
    return sum(s.buckets for s in slots)


def _negated(slots: list[Slot]) -> list[Slot]:
    return [Slot(s.level, s.start, s.end, -s.sign) for s in slots]


def _edge(start: datetime, end: datetime, level: int, bucket: datetime) -> list[Slot]:
    """[start, end) inside the one bucket of `level` that starts at `bucket`: read at the
    finer levels, or as the bucket minus the rest of it, whichever reads fewer rows."""
    size = LEVELS[level]
    direct = cover(start, end, level - 1)
    rest = cover(bucket, start, level - 1) + cover(end, bucket + size, level - 1)
    complement = [Slot(level, bucket, bucket + size, 1), *_negated(rest)]
    return complement if _cost(complement) < _cost(direct) else direct


def cover(start: datetime, end: datetime, level: int = len(LEVELS) - 1) -> list[Slot]:
    """Signed slots whose rows sum to the quarters [start, end) (both whole quarters)."""
    if start >= end:
        return []
    if level == 0:
        return [Slot(0, start, end, 1)]
    size = LEVELS[level]
    inner_from, inner_to = ceil(start, size), floor(end, size)
    if inner_from > inner_to:  # within one bucket
        return _edge(start, end, level, floor(start, size))
    out = [Slot(level, inner_from, inner_to, 1)] if inner_from < inner_to else []
    if start < inner_from:
        out += _edge(start, inner_from, level, inner_from - size)
    if inner_to < end:
        out += _edge(inner_to, end, level, inner_to)
    return _merged(out)


def _merged(slots: list[Slot]) -> list[Slot]:
    """Adjacent ranges of the same level and sign as one (fewer index scans, same rows)."""
    out: list[Slot] = []
    for s in sorted(slots, key=lambda s: (s.level, s.sign, s.start)):
        last = out[-1] if out else None
        if last and (last.level, last.sign, last.end) == (s.level, s.sign, s.start):
            out[-1] = Slot(s.level, last.start, s.end, s.sign)
        else:
            out.append(s)
    return out


def cohort_ranges(
    start: date, end: date, time_zone: str, cohort: Cohort
) -> list[tuple[str | None, datetime, datetime]]:
    """The UTC range of each cohort bucket (the caller's day, week from Monday, or month)
    of the days start..end (inclusive), clipped to them, with its label."""
    zone = ZoneInfo(time_zone)

    def midnight(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    if cohort == "none":
        return [(None, midnight(start), midnight(end + DAY))]
    out: list[tuple[str | None, datetime, datetime]] = []
    day = start
    while day <= end:
        if cohort == "day":
            first, label, after = day, day.isoformat(), day + DAY
        elif cohort == "week":
            first = day - timedelta(days=day.weekday())
            label, after = first.isoformat(), first + WEEK
        else:
            first = day.replace(day=1)
            label = first.strftime("%Y-%m")
            after = (first + timedelta(days=32)).replace(day=1)
        out.append((label, midnight(max(first, start)), midnight(min(after, end + DAY))))
        day = after
    return out


def reading_plan(
    start: date, end: date, time_zone: str, cohort: Cohort
) -> list[tuple[str | None, Slot]]:
    """Every slot to read for a period's cohort buckets, each with its bucket's label."""
    return [
        (label, slot)
        for label, lo, hi in cohort_ranges(start, end, time_zone, cohort)
        for slot in cover(lo, hi)
    ]
