"""Periods in the caller's time zone, funnel arithmetic and percentiles from buckets."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from reporting.domain.windows import MORE_THAN_90_DAYS, stay_bucket
from reporting.reports.models import PeriodError, funnel_steps, parse_period, percentile_hours

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_a_day_in_los_angeles_starts_at_07_or_08_utc() -> None:
    summer = parse_period(date(2026, 9, 19), date(2026, 9, 19), "America/Los_Angeles", NOW)
    assert summer.utc_from == datetime(2026, 9, 19, 7, tzinfo=UTC)
    assert summer.utc_to == datetime(2026, 9, 20, 7, tzinfo=UTC)
    # 00:30 UTC on the 20th is inside the 19th in Los Angeles.
    assert summer.utc_from <= datetime(2026, 9, 20, 0, 30, tzinfo=UTC) < summer.utc_to
    winter = parse_period(date(2026, 12, 1), date(2026, 12, 1), "America/Los_Angeles", NOW)
    assert winter.utc_from.hour == 8


def test_zones_off_the_whole_hour_have_their_own_days() -> None:
    india = parse_period(date(2026, 9, 1), date(2026, 9, 30), "Asia/Kolkata", NOW)
    assert india.utc_from == datetime(2026, 8, 31, 18, 30, tzinfo=UTC)
    assert india.utc_to == datetime(2026, 9, 30, 18, 30, tzinfo=UTC)
    nepal = parse_period(date(2026, 9, 1), date(2026, 9, 1), "Asia/Kathmandu", NOW)
    assert nepal.utc_from == datetime(2026, 8, 31, 18, 15, tzinfo=UTC)
    # Adelaide moves from +09:30 to +10:30 on 4 October; St John's from -02:30 to -03:30 on
    # 1 November: every midnight still falls on a quarter hour.
    adelaide = parse_period(date(2026, 10, 1), date(2026, 10, 10), "Australia/Adelaide", NOW)
    assert (adelaide.utc_from, adelaide.utc_to) == (
        datetime(2026, 9, 30, 14, 30, tzinfo=UTC),
        datetime(2026, 10, 10, 13, 30, tzinfo=UTC),
    )
    st_johns = parse_period(date(2026, 10, 31), date(2026, 11, 1), "America/St_Johns", NOW)
    assert (st_johns.utc_from, st_johns.utc_to) == (
        datetime(2026, 10, 31, 2, 30, tzinfo=UTC),
        datetime(2026, 11, 2, 3, 30, tzinfo=UTC),
    )


def test_a_local_mean_time_off_the_quarter_is_refused_naming_tz() -> None:
    # Liberia kept -00:44:30 until 1972: those midnights are no quarter hour of UTC.
    with pytest.raises(PeriodError) as refused:
        parse_period(date(1970, 1, 1), date(1970, 1, 31), "Africa/Monrovia", NOW)
    assert refused.value.field == "tz"
    with pytest.raises(PeriodError) as unknown:
        parse_period(None, None, "Mars/Olympus", NOW)
    assert unknown.value.field == "tz"
    with pytest.raises(PeriodError) as backwards:
        parse_period(date(2026, 9, 2), date(2026, 9, 1), "UTC", NOW)
    assert backwards.value.field == "start"


def test_the_default_period_is_the_last_30_days_in_the_callers_zone() -> None:
    period = parse_period(None, None, "Pacific/Kiritimati", NOW)  # UTC+14: already the 27th
    assert (period.start, period.end) == (date(2026, 10, 29), date(2026, 11, 27))


def test_steps_carry_conversion_and_drop_off() -> None:
    steps = funnel_steps(["a", "b", "c"], [200, 50, 5])
    assert steps[0]["conversion_from_previous"] is None
    assert (steps[1]["conversion_from_previous"], steps[1]["drop_off"]) == (0.25, 150)
    assert (steps[2]["conversion_from_first"], steps[2]["drop_off_rate"]) == (0.025, 0.9)


def test_percentiles_are_the_upper_edge_of_the_nearest_rank_bucket() -> None:
    buckets = {stay_bucket_hours: n for stay_bucket_hours, n in [(1, 5), (24, 4), (72, 1)]}
    assert percentile_hours(buckets, 0.5) == 1
    assert percentile_hours(buckets, 0.9) == 24
    assert percentile_hours({MORE_THAN_90_DAYS: 3}, 0.5) is None
    assert percentile_hours({}, 0.5) is None


def test_stay_buckets_are_hourly_to_two_days_then_daily() -> None:
    from datetime import timedelta

    assert stay_bucket(timedelta(minutes=1)) == 1
    assert stay_bucket(timedelta(hours=48)) == 48
    assert stay_bucket(timedelta(hours=48, seconds=1)) == 72
    assert stay_bucket(timedelta(days=91)) == MORE_THAN_90_DAYS
