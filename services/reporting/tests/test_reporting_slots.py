"""Which rows answer a range of quarter hours: signed slots of quarter-hour, hourly, 6-hour,
daily and weekly rows add up to exactly the quarters of the range, and read far fewer rows
than the quarters themselves; every IANA zone's days are whole quarters."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporting.domain.slots import (
    DAY,
    HOUR,
    LEVELS,
    QUARTER,
    SIX_HOURS,
    WEEK,
    Slot,
    ceil,
    cohort_ranges,
    cover,
    floor,
    reading_plan,
)

BASE = datetime(2026, 8, 1, tzinfo=UTC)  # a Saturday
SPAN_QUARTERS = 4 * 24 * 7 * 16
# One random count per quarter hour; a level's row is the sum of its quarters, as the store
# keeps it.
_rng = random.Random(5)
QUARTERLY = [_rng.randrange(0, 50) for _ in range(SPAN_QUARTERS + 4 * 24 * 14)]


def _hours(start: datetime, end: datetime) -> int:
    """The brute-force sum of the quarter-hour counts in [start, end)."""
    first = (start - BASE) // QUARTER
    return sum(QUARTERLY[first : first + (end - start) // QUARTER])


def _read(slots: list[Slot]) -> int:
    """What a query over the slots sums: every row of each slot's level in its range."""
    total = 0
    for s in slots:
        size = LEVELS[s.level]
        at = s.start
        while at < s.end:
            total += s.sign * _hours(at, at + size)
            at += size
    return total


def _aligned(s: Slot) -> bool:
    size = LEVELS[s.level]
    return floor(s.start, size) == s.start and floor(s.end, size) == s.end and s.start < s.end


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=4 * 24 * 7, max_value=SPAN_QUARTERS - 4 * 24 * 7),
    st.integers(min_value=0, max_value=4 * 24 * 7 * 8),
)
def test_signed_slots_sum_to_exactly_the_quarters_of_any_range(first: int, length: int) -> None:
    start = BASE + first * QUARTER
    end = start + length * QUARTER
    slots = cover(start, end)
    assert _read(slots) == _hours(start, end)
    assert all(_aligned(s) for s in slots)
    # Never more rows than the quarters themselves, and never more than a handful per edge.
    assert sum(s.buckets for s in slots) <= max(length, 1)
    assert sum(s.buckets for s in slots) <= length // (4 * 168) + 2 * (4 + 2 + 3 + 2) + 1


M, H, Q, D, W = (LEVELS.index(size) for size in (QUARTER, HOUR, SIX_HOURS, DAY, WEEK))


def _utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_a_30_day_period_in_los_angeles_reads_12_rows_per_value_instead_of_53() -> None:
    plan = reading_plan(date(2026, 9, 15), date(2026, 10, 14), "America/Los_Angeles", "none")
    # 07:00 UTC on 15 September to 07:00 UTC on 15 October: the four weeks from Monday 14
    # September, minus 14 September and the 7 hours (6 + 1) of the 15th before 07:00, plus
    # the three days from Monday 12 October and the 7 hours of the 15th.
    assert sorted((s for _, s in plan), key=lambda s: (s.level, s.sign)) == [
        Slot(H, _utc(2026, 9, 15, 6), _utc(2026, 9, 15, 7), -1),
        Slot(H, _utc(2026, 10, 15, 6), _utc(2026, 10, 15, 7), 1),
        Slot(Q, _utc(2026, 9, 15), _utc(2026, 9, 15, 6), -1),
        Slot(Q, _utc(2026, 10, 15), _utc(2026, 10, 15, 6), 1),
        Slot(D, _utc(2026, 9, 14), _utc(2026, 9, 15), -1),
        Slot(D, _utc(2026, 10, 12), _utc(2026, 10, 15), 1),
        Slot(W, _utc(2026, 9, 14), _utc(2026, 10, 12), 1),
    ]
    assert sum(s.buckets for _, s in plan) == 12
    assert {label for label, _ in plan} == {None}


def test_a_range_inside_one_bucket_reads_the_finer_levels_or_the_bucket_minus_the_rest() -> None:
    at = _utc(2026, 9, 16, 5)
    assert cover(at, at + HOUR) == [Slot(H, at, at + HOUR, 1)]
    day = _utc(2026, 9, 16)
    assert cover(day, day + DAY) == [Slot(D, day, day + DAY, 1)]
    assert cover(day, day + 23 * HOUR) == [
        Slot(H, day + 23 * HOUR, day + DAY, -1),
        Slot(D, day, day + DAY, 1),
    ]
    # 02:00-08:00: the block 00:00-06:00 minus two hours, plus two hours: 5 rows, not 6.
    assert cover(day + 2 * HOUR, day + 8 * HOUR) == [
        Slot(H, day, day + 2 * HOUR, -1),
        Slot(H, day + 6 * HOUR, day + 8 * HOUR, 1),
        Slot(Q, day, day + 6 * HOUR, 1),
    ]
    assert cover(day, day) == []


def test_floor_and_ceil_align_weeks_on_monday_midnight_utc() -> None:
    wednesday = datetime(2026, 9, 16, 13, tzinfo=UTC)
    assert floor(wednesday, WEEK) == datetime(2026, 9, 14, tzinfo=UTC)
    assert ceil(wednesday, WEEK) == datetime(2026, 9, 21, tzinfo=UTC)
    assert floor(wednesday, DAY) == datetime(2026, 9, 16, tzinfo=UTC)
    assert ceil(datetime(2026, 9, 16, tzinfo=UTC), DAY) == datetime(2026, 9, 16, tzinfo=UTC)


def test_cohort_buckets_are_the_callers_days_weeks_and_months_clipped_to_the_period() -> None:
    la = "America/Los_Angeles"
    days = cohort_ranges(date(2026, 9, 19), date(2026, 9, 20), la, "day")
    assert days == [
        ("2026-09-19", datetime(2026, 9, 19, 7, tzinfo=UTC), datetime(2026, 9, 20, 7, tzinfo=UTC)),
        ("2026-09-20", datetime(2026, 9, 20, 7, tzinfo=UTC), datetime(2026, 9, 21, 7, tzinfo=UTC)),
    ]
    weeks = cohort_ranges(date(2026, 9, 1), date(2026, 9, 15), la, "week")
    assert [label for label, _, _ in weeks] == ["2026-08-31", "2026-09-07", "2026-09-14"]
    assert weeks[0][1] == datetime(2026, 9, 1, 7, tzinfo=UTC)  # clipped to the period's start
    assert weeks[-1][2] == datetime(2026, 9, 16, 7, tzinfo=UTC)  # and to its end
    # Months across the end of daylight saving time (1 November): 7 hours off, then 8.
    months = cohort_ranges(date(2026, 10, 15), date(2026, 11, 10), la, "month")
    assert months == [
        ("2026-10", datetime(2026, 10, 15, 7, tzinfo=UTC), datetime(2026, 11, 1, 7, tzinfo=UTC)),
        ("2026-11", datetime(2026, 11, 1, 7, tzinfo=UTC), datetime(2026, 11, 11, 8, tzinfo=UTC)),
    ]
    whole = cohort_ranges(date(2026, 9, 1), date(2026, 9, 30), la, "none")
    assert whole == [
        (None, datetime(2026, 9, 1, 7, tzinfo=UTC), datetime(2026, 10, 1, 7, tzinfo=UTC))
    ]


def test_every_hour_of_a_cohort_plan_is_counted_once() -> None:
    plan = reading_plan(date(2026, 9, 1), date(2026, 10, 31), "America/Los_Angeles", "week")
    for label in {label for label, _ in plan}:
        slots = [s for lab, s in plan if lab == label]
        lo, hi = next(
            (a, b)
            for lab, a, b in cohort_ranges(
                date(2026, 9, 1), date(2026, 10, 31), "America/Los_Angeles", "week"
            )
            if lab == label
        )
        assert _read(slots) == _hours(lo, hi)


def test_a_30_day_period_in_kolkata_reads_a_few_quarter_rows_more_at_its_edges() -> None:
    plan = reading_plan(date(2026, 9, 15), date(2026, 10, 14), "Asia/Kolkata", "none")
    slots = [s for _, s in plan]
    lo = datetime(2026, 9, 14, 18, 30, tzinfo=UTC)  # midnight of the 15th in India
    hi = datetime(2026, 10, 14, 18, 30, tzinfo=UTC)
    assert _read(slots) == _hours(lo, hi)
    assert sum(s.buckets for s in slots) <= 16
    assert {s.level for s in slots} >= {M}


@pytest.mark.parametrize(
    "zone",
    [
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Adelaide",
        "America/St_Johns",
        "Australia/Eucla",
        "Pacific/Chatham",
        "Australia/Lord_Howe",
    ],
)
def test_each_day_of_a_quarter_hour_zone_is_the_sum_of_its_slots(zone: str) -> None:
    start, end = date(2026, 9, 1), date(2026, 11, 30)  # across daylight saving changes
    plan = reading_plan(start, end, zone, "day")
    tz = ZoneInfo(zone)
    day = start
    while day <= end:
        lo = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        hi = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        slots = [s for label, s in plan if label == day.isoformat()]
        assert _read(slots) == _hours(lo, hi), day
        day += timedelta(days=1)


def test_every_iana_zones_midnights_fall_on_a_quarter_hour_of_utc() -> None:
    """The premise of the design: each zone's every midnight of 2025-2027 is a quarter key."""
    off = []
    for name in sorted(available_timezones()):
        tz = ZoneInfo(name)
        day = date(2025, 1, 1)
        while day < date(2028, 1, 1):
            at = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
            if at.minute % 15 or at.second:
                off.append((name, day))
            day += timedelta(days=1)
    assert off == []
