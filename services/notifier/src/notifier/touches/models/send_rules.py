"""Whether a due touch goes out now, waits, or is suppressed (pure; decided at send time).

Conditions are checked again here because the world moves on between scheduling and the due
time: the person bought, left the stage, unsubscribed, or was erased.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.playbooks.models import Cap


@dataclass(frozen=True)
class Send:
    """Goes out now."""


@dataclass(frozen=True)
class Defer:
    """Not yet: tried again at `until` (quiet hours, a frequency cap that frees up then)."""

    until: datetime
    why: str


@dataclass(frozen=True)
class Suppress:
    """Never: the touch is dropped, and `why` is kept with it."""

    why: str


Decision = Send | Defer | Suppress


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def next_allowed(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """None when `now` is outside quiet hours in `tz`, else when they end (aware UTC-safe)."""
        local = now.astimezone(tz)
        t = local.time()
        if self.start == self.end:
            return None
        wraps = self.start > self.end  # e.g. 21:00-08:00 spans midnight
        quiet = (t >= self.start or t < self.end) if wraps else (self.start <= t < self.end)
        if not quiet:
            return None
        end_day = local.date()
        if wraps and t >= self.start:
            end_day += timedelta(days=1)
        return datetime.combine(end_day, self.end, tzinfo=tz)


class TouchFacts(Protocol):
    """The touch as scheduled: what the rules read of it (a due touch is one)."""

    @property
    def channel(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def category(self) -> str | None: ...

    @property
    def playbook(self) -> str: ...

    @property
    def requires_stage(self) -> str | None: ...

    @property
    def cancel_on(self) -> tuple[str, ...]: ...

    @property
    def triggered_at(self) -> datetime: ...


@dataclass(frozen=True)
class LeadFacts:
    """What is known about the lead right now."""

    reachable: bool
    stage: str | None
    consents: Mapping[str, bool]
    last_activity: Mapping[str, datetime]
    time_zone: str | None
    recent_sends: Sequence[datetime] = field(default_factory=tuple)  # same channel, marketing
    recent_playbook_sends: Sequence[datetime] = field(default_factory=tuple)


@dataclass(frozen=True)
class Policy:
    quiet_hours: QuietHours | None
    default_time_zone: str
    channel_caps: Mapping[str, Sequence[Cap]]


def zone(name: str | None, default: str) -> ZoneInfo:
    """The lead's IANA zone, or the default when unknown or not a real zone."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def cap_frees_at(sends: Sequence[datetime], caps: Sequence[Cap], now: datetime) -> datetime | None:
    """None when another send fits every cap now, else the first moment it will."""
    latest: datetime | None = None
    for cap in caps:
        window = sorted(s for s in sends if s > now - cap.period)
        if len(window) >= cap.count:
            frees = window[len(window) - cap.count] + cap.period
            latest = frees if latest is None or frees > latest else latest
    return latest


def decide(
    touch: TouchFacts,
    lead: LeadFacts,
    policy: Policy,
    now: datetime,
    *,
    playbook_enabled: bool,
    playbook_caps: Sequence[Cap] = (),
) -> Decision:
    """Send, wait (quiet hours, caps: the touch is not dropped) or suppress (and why)."""
    if not playbook_enabled:
        return Suppress("playbook disabled or removed")
    if touch.requires_stage is not None and lead.stage != touch.requires_stage:
        return Suppress(f"left stage {touch.requires_stage}")
    for activity in touch.cancel_on:
        at = lead.last_activity.get(activity)
        if at is not None and at >= touch.triggered_at:
            return Suppress(f"{activity} since the trigger")
    if touch.channel == "task":
        return Send()  # a task goes to sales, not to the person: no consent, caps or hours
    if not lead.reachable:
        return Suppress("no contact details (erased or never captured)")
    if touch.kind == "transactional":
        return Send()
    category = touch.category or "marketing"
    if not lead.consents.get(category, False):
        given = "withdrawn" if category in lead.consents else "not given"
        return Suppress(f"consent for {category} {given}")
    frees = cap_frees_at(lead.recent_sends, policy.channel_caps.get(touch.channel, ()), now)
    own = cap_frees_at(lead.recent_playbook_sends, playbook_caps, now)
    if frees is not None or own is not None:
        until = max(t for t in (frees, own) if t is not None)
        return Defer(until, "frequency cap")
    if policy.quiet_hours is not None:
        tz = zone(lead.time_zone, policy.default_time_zone)
        ends = policy.quiet_hours.next_allowed(now, tz)
        if ends is not None:
            return Defer(ends, "quiet hours")
    return Send()
