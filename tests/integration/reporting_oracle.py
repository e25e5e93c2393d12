"""The reporting numbers computed independently, by brute force over the raw event list.

Shares no code with the service: it reads the events as published and answers the same
questions the simplest way, lead by lead, so the exactness tests compare two implementations.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadCaptured,
    LeadCapturedV2,
    LeadErased,
    LeadMerged,
    LeadUpdated,
    LeadUpdatedV2,
    StageChanged,
    TouchSent,
)

# Both versions of the lead events carry the attribution fields under the same names.
CAPTURED = (LeadCaptured, LeadCapturedV2)
UPDATED = (LeadUpdated, LeadUpdatedV2)


def merged_away(events: Sequence[EventData]) -> list[EventData]:
    """The events as if each merged pair had always been one lead (the survivor).

    A merge (`funnel.lead.merged.v1`) makes the newer lead's every event the survivor's:
    its captures and updates (the earlier capture is the first touch), activities, orders
    (one order id counted once for the person), touches, opens and clicks. Its stage moves
    are not: where the person is follows the survivor's own moves, the tracker's `merged`
    move among them; only a survivor without any stage move takes the other's. A merge of a
    lead erased before it did not happen; a survivor erased takes the other lead with it.
    """
    erased = {e.lead_id for e in events if isinstance(e, LeadErased)}
    into = {
        m.merged_lead_id: m.lead_id
        for m in events
        if isinstance(m, LeadMerged) and m.merged_lead_id not in erased
    }
    moved = {e.lead_id for e in events if isinstance(e, StageChanged)}
    out: list[EventData] = []
    for e in events:
        if isinstance(e, LeadMerged):
            continue
        survivor = into.get(e.lead_id)
        if survivor is None:
            out.append(e)
        elif survivor in erased:
            continue  # merged into a person who was then forgotten
        elif not isinstance(e, StageChanged) or survivor not in moved:
            out.append(e.model_copy(update={"lead_id": survivor}))
    return out


def test_leads(events: Sequence[EventData]) -> set[UUID]:
    """People every capture of whom was a test (a v2 capture with `test`; v1 has no such
    flag): in no report and no funnel count, whatever else they did, in whatever order it
    arrived. A test lead merged with a real one is a real person."""
    test = {e.lead_id for e in events if isinstance(e, LeadCapturedV2) and e.test}
    real = {
        e.lead_id
        for e in events
        if isinstance(e, CAPTURED) and not (isinstance(e, LeadCapturedV2) and e.test)
    }
    return test - real


class Oracle:
    def __init__(self, events: Sequence[EventData]) -> None:
        events = merged_away(events)
        left_out = {e.lead_id for e in events if isinstance(e, LeadErased)} | test_leads(events)
        self.events = [e for e in events if e.lead_id not in left_out]
        self.stages: dict[UUID, set[tuple[datetime, int, str]]] = defaultdict(set)
        # Each lead's captures and updates, in the order of the list (for attribution).
        self.details: dict[UUID, list[EventData]] = defaultdict(list)
        for e in self.events:
            if isinstance(e, CAPTURED + UPDATED):
                self.details[e.lead_id].append(e)
            if isinstance(e, StageChanged):
                self.stages[e.lead_id].add((e.changed_at, e.to_stage_position, e.to_stage))

    def snapshot(self) -> dict[str, int]:
        now = Counter(max(entries)[2] for entries in self.stages.values())
        return dict(now)

    def attribute(self, lead: UUID, breakdown: str, attribution: str) -> str:
        captured = [e for e in self.details[lead] if isinstance(e, CAPTURED)]
        if attribution == "first":
            if not captured:
                return "(unknown)"
            c = min(captured, key=lambda e: e.captured_at)  # a merged lead's may be earlier
            value = {"form": c.form_id, "landing_page": c.landing_page}.get(
                breakdown, getattr(c.utm, breakdown, None)
            )
            return value or "(none)"
        touches: list[tuple[datetime, str | None, str | None, Any]] = [
            (c.captured_at, c.form_id, c.landing_page, c.utm) for c in captured
        ] + [
            (u.updated_at, u.form_id, u.landing_page, u.last_touch_utm)
            for u in self.details[lead]
            if isinstance(u, UPDATED)
        ]
        touches.sort(key=lambda t: t[0])
        if breakdown in ("form", "landing_page"):
            index = 1 if breakdown == "form" else 2
            values = [t[index] for t in touches if t[index]]
            return values[-1] if values else "(none)"
        with_utm = [t for t in touches if t[3].source or t[3].medium or t[3].campaign]
        if not with_utm:
            return self.attribute(lead, breakdown, "first")
        return getattr(with_utm[-1][3], breakdown) or "(none)"

    def conversion(
        self,
        steps: Sequence[str],
        start: date,
        end: date,
        tz: str,
        window_days: int,
        cohort: str = "none",
        breakdown: str | None = None,
        attribution: str = "first",
    ) -> dict[tuple[str | None, str | None], list[int]]:
        zone = ZoneInfo(tz)
        lo = datetime.combine(start, time(0), tzinfo=zone)
        hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)
        window = timedelta(days=window_days)
        out: dict[tuple[str | None, str | None], list[int]] = {}
        for lead, entries in self.stages.items():
            firsts = sorted(at for at, _, stage in entries if stage == steps[0])
            if not firsts or not lo <= firsts[0] < hi:
                continue
            t1 = firsts[0]
            local = t1.astimezone(zone)
            key_cohort = {
                "none": None,
                "day": local.strftime("%Y-%m-%d"),
                "week": (local.date() - timedelta(days=local.weekday())).isoformat(),
                "month": local.strftime("%Y-%m"),
            }[cohort]
            segment = None if breakdown is None else self.attribute(lead, breakdown, attribution)
            counts = out.setdefault((key_cohort, segment), [0] * len(steps))
            counts[0] += 1
            for k, stage in enumerate(steps[1:], start=1):
                later = sorted(at for at, _, s in entries if s == stage and at >= t1)
                if later and later[0] - t1 <= window:
                    counts[k] += 1
        return out

    def revenue(self) -> dict[str, tuple[Decimal, int, int]]:
        """Per currency: net revenue, orders (one per order id), customers."""
        orders: dict[tuple[UUID, str], ActivityRecorded] = {}
        refunds: list[ActivityRecorded] = []
        for e in self.events:
            if not isinstance(e, ActivityRecorded):
                continue
            if e.activity_type == "purchase_completed":
                orders[(e.lead_id, e.order_id or str(e.activity_id))] = e
            elif e.activity_type == "subscription_renewed":
                orders[(e.lead_id, str(e.activity_id))] = e
            elif e.activity_type == "refund_issued":
                refunds.append(e)
        totals: dict[str, list[Any]] = defaultdict(lambda: [Decimal(0), 0, set()])
        for o in orders.values():
            t = totals[o.currency or "XXX"]
            t[0] += o.amount or 0
            t[1] += 1
            t[2].add(o.lead_id)
        for r in refunds:
            totals[r.currency or "XXX"][0] -= r.amount or 0
        return {c: (t[0], t[1], len(t[2])) for c, t in totals.items()}


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def stays_by_stage(oracle: Oracle, lo: datetime, hi: datetime) -> dict[str, list[timedelta]]:
    """Completed stays (entry to the next different stage) begun in [lo, hi), per stage."""
    out: dict[str, list[timedelta]] = defaultdict(list)
    for entries in oracle.stages.values():
        ordered = sorted(entries)
        start = ordered[0]
        for entry in ordered[1:]:
            if entry[2] != start[2]:
                if lo <= start[0] < hi:
                    out[start[2]].append(entry[0] - start[0])
                start = entry
    return out


def bucket_percentile(durations: list[timedelta], fraction: float) -> int | None:
    """Nearest rank, reported as the upper edge of its bucket (hours: hourly to 48, then
    whole days to 90 days; None beyond)."""
    import math

    ranked = sorted(durations)
    value = ranked[max(math.ceil(fraction * len(ranked)) - 1, 0)]
    hours = math.ceil(value.total_seconds() / 3600)
    if hours <= 48:
        return hours
    return math.ceil(hours / 24) * 24 if hours <= 90 * 24 else None


def interactions_before_first_order(oracle: Oracle, lo: datetime, hi: datetime) -> list[int]:
    """Per buyer whose first order is in [lo, hi): the interactions strictly before it."""
    from funnel_contracts import TouchClicked, TouchOpened

    orders: dict[UUID, list[datetime]] = defaultdict(list)
    moments: dict[UUID, dict[str, datetime]] = defaultdict(dict)
    for e in oracle.events:
        if isinstance(e, ActivityRecorded):
            if e.activity_type in ("purchase_completed", "subscription_renewed"):
                orders[e.lead_id].append(e.occurred_at)
            elif e.activity_type != "refund_issued":
                moments[e.lead_id][f"a{e.activity_id}"] = e.occurred_at
        elif isinstance(e, CAPTURED):
            moments[e.lead_id][f"s{e.submission_id}"] = e.captured_at
        elif isinstance(e, UPDATED) and e.submission_id:
            moments[e.lead_id][f"s{e.submission_id}"] = e.updated_at
        elif isinstance(e, TouchOpened):
            moments[e.lead_id][f"o{e.touch_id}"] = e.opened_at
        elif isinstance(e, TouchClicked):
            moments[e.lead_id][f"c{e.touch_id}{e.url}"] = e.clicked_at
    out = []
    for lead, times in orders.items():
        first = min(times)
        if lo <= first < hi:
            out.append(sum(1 for at in moments[lead].values() if at < first))
    return out


def _bucket(moment: datetime, zone: ZoneInfo, interval: str) -> str:
    local = moment.astimezone(zone)
    if interval == "day":
        return local.date().isoformat()
    if interval == "week":
        return (local.date() - timedelta(days=local.weekday())).isoformat()
    return local.strftime("%Y-%m")


def _buckets(
    start: date, end: date, zone: ZoneInfo, interval: str
) -> list[tuple[str, datetime, datetime]]:
    """Each day/week/month touching start..end, clipped to it: (label, from, to) in UTC."""
    out: dict[str, list[datetime]] = {}
    day = start
    while day <= end:
        lo = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        hi = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        label = _bucket(lo, zone, interval)
        span = out.setdefault(label, [lo, hi])
        span[1] = hi
        day += timedelta(days=1)
    return [(label, lo, hi) for label, (lo, hi) in out.items()]


def money_events(oracle: Oracle) -> dict[UUID, list[tuple[datetime, str, Decimal, str]]]:
    """Per lead: (at, kind, amount, currency) of each distinct order, renewal and refund, and
    (at, "cancel", 0, "") of each cancellation."""
    seen: dict[tuple[UUID, str], tuple[datetime, str, Decimal, str]] = {}
    for e in oracle.events:
        if not isinstance(e, ActivityRecorded):
            continue
        amount, currency = e.amount or Decimal(0), e.currency or "XXX"
        at = e.occurred_at.astimezone(UTC)
        if e.activity_type == "purchase_completed":
            key = f"order:{e.order_id}" if e.order_id else f"activity:{e.activity_id}"
            seen[(e.lead_id, key)] = (at, "order", amount, currency)
        elif e.activity_type == "subscription_renewed":
            seen[(e.lead_id, f"renewal:{e.activity_id}")] = (at, "renewal", amount, currency)
        elif e.activity_type == "refund_issued":
            seen[(e.lead_id, f"refund:{e.activity_id}")] = (at, "refund", amount, currency)
        elif e.activity_type == "subscription_cancelled":
            seen[(e.lead_id, f"cancel:{e.activity_id}")] = (at, "cancel", Decimal(0), "")
    out: dict[UUID, list[tuple[datetime, str, Decimal, str]]] = defaultdict(list)
    for (lead, _), item in seen.items():
        out[lead].append(item)
    return out


def revenue_series(
    oracle: Oracle, start: date, end: date, tz: str, interval: str
) -> dict[tuple[str, str], tuple[Decimal, int, int, int, int]]:
    """Per (period, currency): net revenue, orders, refunds, customers whose first order in
    the currency falls in the period, and customers whose second one does."""
    zone = ZoneInfo(tz)
    spans = _buckets(start, end, zone, interval)

    def label(at: datetime) -> str | None:
        return next((name for name, lo, hi in spans if lo <= at < hi), None)

    totals: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0, 0, 0])
    for items in money_events(oracle).values():
        nth: Counter[str] = Counter()
        for at, kind, amount, currency in sorted(items, key=lambda i: i[0]):
            if kind == "cancel":
                continue
            period = label(at)
            if kind == "refund":
                if period:
                    totals[(period, currency)][0] -= amount
                    totals[(period, currency)][2] += 1
                continue
            nth[currency] += 1
            if period:
                t = totals[(period, currency)]
                t[0] += amount
                t[1] += 1
                t[3] += nth[currency] == 1
                t[4] += nth[currency] == 2
    return {k: tuple(v) for k, v in totals.items()}  # type: ignore[misc]


def subscription_series(
    oracle: Oracle, start: date, end: date, tz: str, interval: str, funnel: str = ""
) -> dict[tuple[str, str], tuple[Decimal, int, int, int, float | None]]:
    """Per (period, currency): MRR and subscribers at the period's end (the state of each
    subscriber after every payment and cancellation before that instant), new subscriptions
    and cancellations in it, churn = cancellations / subscribers at its start."""
    zone = ZoneInfo(tz)
    leads = money_events(oracle)
    subscribers = {
        lead: sorted(items, key=lambda i: (i[0], i[1] == "cancel"))
        for lead, items in leads.items()
        if any(k in ("order", "renewal") for _, k, _, _ in items)
        and (funnel == "subscription" or any(k in ("renewal", "cancel") for _, k, _, _ in items))
    }

    def state(
        items: list[tuple[datetime, str, Decimal, str]], before: datetime
    ) -> tuple[Decimal, str] | None:
        current = None
        for at, kind, amount, currency in items:
            if at >= before:
                break
            if kind == "cancel":
                current = None
            elif kind != "refund":
                current = (amount, currency)
        return current

    out: dict[tuple[str, str], tuple[Decimal, int, int, int, float | None]] = {}
    for name, lo, hi in _buckets(start, end, zone, interval):
        currencies = {
            c
            for items in subscribers.values()
            for at, k, _, c in items
            if k != "cancel" and at < hi
        }
        for currency in currencies:
            mrr, now, at_start, new, cancelled = Decimal(0), 0, 0, 0, 0
            for items in subscribers.values():
                end_state = state(items, hi)
                if end_state and end_state[1] == currency:
                    mrr += end_state[0]
                    now += 1
                start_state = state(items, lo)
                if start_state and start_state[1] == currency:
                    at_start += 1
                active: tuple[Decimal, str] | None = None
                for at, kind, amount, cur in items:
                    if at >= hi:
                        break
                    if kind == "cancel":
                        if active and active[1] == currency and at >= lo:
                            cancelled += 1
                        active = None
                    elif kind != "refund":
                        if active is None and cur == currency and at >= lo:
                            new += 1
                        active = (amount, cur)
            churn = None if at_start == 0 else round(cancelled / at_start, 4)
            out[(name, currency)] = (mrr, now, new, cancelled, churn)
    return out


WINDOWS = (1, 3, 7, 14, 30, 60, 90)


def time_to_convert(
    oracle: Oracle, from_stage: str, to_stage: str, start: date, end: date, tz: str
) -> dict[str, int]:
    """Leads whose first entry into from_stage lies in the period, and how many first
    reached to_stage (at or after it) within each window, cumulative, and at all."""
    zone = ZoneInfo(tz)
    lo = datetime.combine(start, time(0), tzinfo=zone)
    hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)
    out = {"entered": 0, **{f"c{d}d": 0 for d in WINDOWS}, "c_any": 0}
    for entries in oracle.stages.values():
        firsts = sorted(at for at, _, s in entries if s == from_stage)
        if not firsts or not lo <= firsts[0] < hi:
            continue
        out["entered"] += 1
        later = sorted(at for at, _, s in entries if s == to_stage and at >= firsts[0])
        if later:
            took = later[0] - firsts[0]
            out["c_any"] += 1
            for d in WINDOWS:
                out[f"c{d}d"] += took <= timedelta(days=d)
    return out


def touch_effectiveness(
    oracle: Oracle, start: date, end: date, tz: str, window_days: int
) -> dict[tuple[str, str], tuple[int, int]]:
    """Per (stage, playbook): leads whose first send of the playbook at that stage lies in
    the period, and how many ordered within the window after it; playbook "" is the leads
    of the stage no touch reached, from their first entry into it. Offline touches count at
    the stage the lead was in when they happened, as "offline:<type>"."""
    from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES

    zone = ZoneInfo(tz)
    lo = datetime.combine(start, time(0), tzinfo=zone)
    hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)
    window = timedelta(days=window_days)
    sends: dict[UUID, list[tuple[datetime, str, str | None]]] = defaultdict(list)
    orders: dict[UUID, list[datetime]] = defaultdict(list)
    seen_orders: set[tuple[UUID, str]] = set()
    for e in oracle.events:
        if isinstance(e, TouchSent):
            sends[e.lead_id].append((e.sent_at, e.playbook, e.stage))
        elif isinstance(e, ActivityRecorded):
            if e.activity_type == "purchase_completed":
                key = (e.lead_id, f"o{e.order_id}" if e.order_id else f"a{e.activity_id}")
                if key not in seen_orders:
                    seen_orders.add(key)
                    orders[e.lead_id].append(e.occurred_at)
            elif e.activity_type == "subscription_renewed":
                orders[e.lead_id].append(e.occurred_at)
            elif e.activity_type in OFFLINE_ACTIVITY_TYPES:
                sends[e.lead_id].append((e.occurred_at, f"offline:{e.activity_type}", "@"))
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for lead, entries in oracle.stages.items():
        ordered = sorted(entries)
        first_entry: dict[str, datetime] = {}
        for at, _, stage in ordered:
            first_entry.setdefault(stage, at)

        def stage_at(moment: datetime) -> str | None:
            current = None
            for at, _, stage in ordered:  # noqa: B023
                if at > moment:
                    break
                current = stage
            return current

        for stage, entered in first_entry.items():
            anchors: dict[str, datetime] = {}
            for at, playbook, at_stage in sorted(sends[lead]):
                where = stage_at(at) if at_stage == "@" else at_stage
                if where == stage:
                    anchors.setdefault(playbook, at)
            for playbook, anchor in (anchors or {"": entered}).items():
                if not lo <= anchor < hi:
                    continue
                t = out[(stage, playbook)]
                t[0] += 1
                after = [o for o in sorted(orders[lead]) if o >= anchor]
                t[1] += bool(after) and after[0] - anchor <= window
    return {k: (v[0], v[1]) for k, v in out.items()}


def revenue_by(
    oracle: Oracle, breakdown: str | None, attribution: str
) -> dict[tuple[str | None, str], tuple[Decimal, int, int, int, float | None]]:
    """Lifetime, per (segment, currency): net revenue, orders, refunds, customers, and the
    repeat-purchase rate (customers with two orders or more, any currency, of the segment's
    customers)."""
    totals: dict[tuple[str | None, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0, set()])
    buyers: dict[str | None, dict[UUID, int]] = defaultdict(dict)
    for lead, items in money_events(oracle).items():
        segment = None if breakdown is None else oracle.attribute(lead, breakdown, attribution)
        paid = [i for i in items if i[1] in ("order", "renewal")]
        if paid:
            buyers[segment][lead] = len(paid)
        for _, kind, amount, currency in items:
            if kind == "cancel":
                continue
            t = totals[(segment, currency)]
            if kind == "refund":
                t[0] -= amount
                t[2] += 1
            else:
                t[0] += amount
                t[1] += 1
                t[3].add(lead)
    out = {}
    for (segment, currency), (revenue, n_orders, refunds, customers) in totals.items():
        if not n_orders and not refunds:
            continue
        seg_buyers = buyers[segment]
        repeat = sum(1 for n in seg_buyers.values() if n >= 2)
        rate = None if not seg_buyers else round(repeat / len(seg_buyers), 4)
        out[(segment, currency)] = (revenue, n_orders, refunds, len(customers), rate)
    return out


def _leak_periods(
    today: date, window_days: int, current_days: int, baseline_days: int
) -> tuple[tuple[date, date], tuple[date, date]]:
    """(baseline, current) entry-cohort days of a check on `today`. A cohort of UTC day d has
    had the whole window once every lead of it could have used it: d + window_days has
    ended, so the latest matured day is today - window_days - 1; the current period is the
    `current_days` days up to it, the baseline the `baseline_days` before."""
    latest = today - timedelta(days=window_days + 1)
    current = (latest - timedelta(days=current_days - 1), latest)
    baseline_last = current[0] - timedelta(days=1)
    return (baseline_last - timedelta(days=baseline_days - 1), baseline_last), current


def _step_counts(
    oracle: Oracle, a: str, b: str, period: tuple[date, date], window_days: int
) -> dict[str, tuple[int, int]]:
    """(entered, converted) of step a -> b overall ("all") and per first-touch source."""
    out = {}
    for breakdown in (None, "source"):
        groups = oracle.conversion([a, b], *period, "UTC", window_days, breakdown=breakdown)
        for (_, segment), (entered, converted) in groups.items():
            out["all" if breakdown is None else f"source:{segment}"] = (entered, converted)
    return out


def _drop_p(baseline: tuple[int, int], current: tuple[int, int]) -> float:
    """One-sided p-value of the current rate being below the baseline's: the pooled
    two-proportion z-test with Yates' correction (1.0 where it cannot be told)."""
    from statistics import NormalDist

    (n1, k1), (n2, k2) = baseline, current
    if not n1 or not n2:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2 - (1 / n1 + 1 / n2) / 2) / spread
    return NormalDist().cdf(-z)


def leaks_opened(
    oracle: Oracle,
    today: date,
    *,
    window_days: int = 7,
    current_days: int = 7,
    baseline_days: int = 28,
    min_entered: int = 100,
    min_expected: int = 10,
    false_alarm_budget: float = 0.05,
) -> dict[tuple[str, str, str], tuple[tuple[int, int], tuple[int, int], float]]:
    """What one check of the leak watch on `today` finds leaking (decision 0047), per
    (from_stage, to_stage, segment): the baseline's and the current period's (entered,
    converted) and the one-sided p-value of the drop.

    Each consecutive pair of the funnel's stages (as the events show them) is a step,
    tested overall ("all") and per first-touch source ("source:<value>") where both periods
    hold `min_entered` leads and the current one `min_expected` conversions at the
    baseline rate. The level is the budget shared by 91 daily checks of a quarter and by
    this check's tests of the funnel."""
    from itertools import pairwise

    baseline, current = _leak_periods(today, window_days, current_days, baseline_days)
    stages = [s for _, s in sorted({(pos, s) for e in oracle.stages.values() for _, pos, s in e})]
    tested = {}
    for a, b in pairwise(stages):
        before = _step_counts(oracle, a, b, baseline, window_days)
        now = _step_counts(oracle, a, b, current, window_days)
        for segment in before.keys() | now.keys():
            (n1, k1), (n2, k2) = before.get(segment, (0, 0)), now.get(segment, (0, 0))
            if n1 >= min_entered and n2 >= min_entered and k1 / n1 * n2 >= min_expected:
                tested[(a, b, segment)] = ((n1, k1), (n2, k2))
    level = false_alarm_budget / 91 / max(len(tested), 1)
    found = {}
    for key, (before_counts, now_counts) in tested.items():
        p = _drop_p(before_counts, now_counts)
        if p < level:
            found[key] = (before_counts, now_counts, p)
    return found


def leak_recovery(
    oracle: Oracle,
    today: date,
    key: tuple[str, str, str],
    opened_against: tuple[int, int],
    *,
    window_days: int = 7,
    current_days: int = 7,
    baseline_days: int = 28,
    min_entered: int = 100,
    resolve_p: float = 0.2,
) -> tuple[bool, tuple[int, int], float]:
    """A later check on `today` of the open leak of `key` (step and segment), opened
    against the baseline `opened_against`: whether it resolves (the current period holds
    `min_entered` leads and its drop against that baseline is no longer significant at
    `resolve_p`), the current (entered, converted), and the p-value of the drop now."""
    _, current = _leak_periods(today, window_days, current_days, baseline_days)
    a, b, segment = key
    now = _step_counts(oracle, a, b, current, window_days).get(segment, (0, 0))
    p = _drop_p(opened_against, now)
    return now[0] >= min_entered and p >= resolve_p, now, p
