"""Conversion windows and duration buckets: the fixed grid the aggregates are counted on.

Windows are a fixed set so that each aggregate row carries one counter per window and a query
reads no per-lead data; the window's edge counts as inside (a delay of exactly 14 days is
within the 14-day window).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

WINDOW_DAYS: tuple[int, ...] = (1, 3, 7, 14, 30, 60, 90)
DEFAULT_WINDOW_DAYS = 14
# One counter column per window, plus "converted at any time later".
WINDOW_COLUMNS: tuple[str, ...] = (*(f"c{d}d" for d in WINDOW_DAYS), "c_any")

HOUR = timedelta(hours=1)
MORE_THAN_90_DAYS = 999_999  # the stay bucket of everything longer than 90 days, in hours


def window_column(days: int) -> str:
    """The counter column of a window; ValueError for a window off the grid."""
    if days not in WINDOW_DAYS:
        raise ValueError(f"window_days must be one of {', '.join(map(str, WINDOW_DAYS))}")
    return f"c{days}d"


_WINDOWS = tuple(timedelta(days=d) for d in WINDOW_DAYS)


def window_counters(delay: timedelta) -> tuple[int, ...]:
    """1 for every window the delay falls inside (edge inclusive), then 1 for "any"."""
    return (*[1 if delay <= window else 0 for window in _WINDOWS], 1)


def quarter_of(moment: datetime) -> datetime:
    """The quarter hour (UTC) an instant falls in: the time key of every aggregate (the
    column is still named `hour`). Every zone's midnight since 1972 is a whole quarter hour
    from UTC midnight (India +05:30, Nepal +05:45, Adelaide +09:30/+10:30), so a day in any
    zone is a whole number of these keys."""
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def stay_bucket(duration: timedelta) -> int:
    """Upper edge, in hours, of a stay's bucket: hourly up to 48 h, daily up to 90 days."""
    hours = math.ceil(duration.total_seconds() / 3600)
    if hours <= 48:
        return max(hours, 0)
    if hours <= 90 * 24:
        return math.ceil(hours / 24) * 24
    return MORE_THAN_90_DAYS


def delay_bucket_labels() -> list[str]:
    """Labels of the time-to-convert histogram, one per window band and one beyond."""
    labels = []
    lower = 0
    for d in WINDOW_DAYS:
        labels.append(f"{lower}-{d}d" if lower else f"<={d}d")
        lower = d
    labels.append(f">{WINDOW_DAYS[-1]}d")
    return labels
