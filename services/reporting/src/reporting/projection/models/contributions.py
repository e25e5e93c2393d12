"""What one lead adds to each aggregate table (pure).

The aggregates are sums over leads of `contributions(state)`. When an event changes a lead's
state, the projection applies `diff(old, new)`: rows the lead leaves are decremented, rows it
joins incremented. Any order of the same events gives the same sums, and an erased lead
contributes nothing.

Most rows are counted once per (dimension, value) the lead counts under; `change` diffs the
rows before that fan-out when the lead's dimensions did not change (the common case: a stage
move, an order), so a batch computes and compares a few rows per lead instead of hundreds.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from reporting.domain.dimensions import (
    ALL,
    BASELINE,
    BREAKDOWNS,
    NONE,
    OFFLINE,
    REVENUE_BREAKDOWNS,
    UNKNOWN,
    Breakdown,
    dim_name,
)
from reporting.domain.windows import WINDOW_COLUMNS, quarter_of, stay_bucket, window_counters
from reporting.projection.models.lead_state import LeadState, Touchpoint
from reporting.projection.models.stage_history import StageEntry, in_move_order

Number = int | Decimal
Key = tuple[str, tuple[Any, ...]]  # (table, key columns)
Contributions = dict[Key, tuple[Number, ...]]
# A row counted under each of the lead's dimensions: (table, key columns before the
# dimension and its value, key columns after them).
FannedKey = tuple[str, tuple[Any, ...], tuple[Any, ...]]
Fanned = dict[FannedKey, tuple[Number, ...]]
# Rows counted under each of a list of (dimension, value) pairs.
FannedChange = tuple[list[tuple[str, str]], Fanned]

NOT_CONVERTED: tuple[int, ...] = (0,) * len(WINDOW_COLUMNS)
INTERACTIONS_CAP = 50  # "50" in the histogram means 50 or more; the sum stays exact
# The funnel whose every order is a subscription payment (stage-tracker's default of that
# name); in other funnels a lead is a subscriber once it renews or cancels.
SUBSCRIPTION_FUNNEL = "subscription"


def contributions(state: LeadState) -> Contributions:
    """Every aggregate row this lead counts in, with its counters."""
    parts = _parts(state)
    out = parts.rows
    _fan_out(out, parts.by_dim, parts.dims)
    _fan_out(out, parts.by_revenue_dim, parts.revenue_dims)
    return out


def change(old: LeadState, new: LeadState) -> Contributions:
    """`diff(contributions(old), contributions(new))`, computed before the fan-out over the
    dimensions: under a (dimension, value) the lead counts under in both states its rows
    change by new - old; under one it left they are taken away, under one it joined added."""
    out, fanned = change_parts(old, new)
    for dims, rows in fanned:
        _fan_out(out, rows, dims)
    return out


def change_parts(old: LeadState, new: LeadState) -> tuple[Contributions, list[FannedChange]]:
    """`change(old, new)` before its fan-out: the rows counted once, and the rows counted
    under each (dimension, value) of a group, each group with its own pairs."""
    if old is new:
        return {}, []
    before, after = _parts(old), _parts(new)
    out = diff(before.rows, after.rows)
    fanned: list[FannedChange] = []
    for old_rows, new_rows, old_dims, new_dims in (
        (before.by_dim, after.by_dim, before.dims, after.dims),
        (before.by_revenue_dim, after.by_revenue_dim, before.revenue_dims, after.revenue_dims),
    ):
        if not old_rows and not new_rows:
            continue
        if old_dims == new_dims:  # the common case: the lead's attribution did not change
            fanned.append((new_dims, diff(old_rows, new_rows)))
            continue
        kept = set(old_dims) & set(new_dims)
        fanned.append(([d for d in new_dims if d in kept], diff(old_rows, new_rows)))
        fanned.append(([d for d in old_dims if d not in kept], diff(old_rows, {})))
        fanned.append(([d for d in new_dims if d not in kept], new_rows))
    return out, fanned


class Deltas:
    """A batch's change of every aggregate, summed, with the rows counted under each
    (dimension, value) kept before their fan-out: summed per group of pairs (a lead's
    dimensions, or the part of them it kept, left or joined), so that the batch costs a few
    rows per lead change rather than a few rows times eleven pairs. The store fans the groups
    out in SQL; `expanded()` is the same sum fanned out here (the reference)."""

    __slots__ = ("groups", "rows")

    def __init__(self) -> None:
        self.rows: Contributions = {}
        # Per group of (dimension, value) pairs: the rows counted under each of them, summed.
        self.groups: dict[tuple[tuple[str, str], ...], Fanned] = {}

    def __bool__(self) -> bool:
        return bool(self.rows) or any(self.groups.values())

    def add_change(self, old: LeadState, new: LeadState) -> None:
        """self += change(old, new)."""
        rows, fanned = change_parts(old, new)
        add(self.rows, rows)
        for dims, changed in fanned:
            if dims and changed:
                add(self.groups.setdefault(tuple(dims), {}), changed)

    def expanded(self) -> Contributions:
        """The summed change fanned out: equal to adding each `change` in turn."""
        out: Contributions = {}
        add(out, self.rows)
        for dims, rows in self.groups.items():
            fanned: Contributions = {}
            _fan_out(fanned, rows, list(dims))
            add(out, fanned)
        return out


class _Parts:
    """A lead's rows: those counted once, and those counted under each dimension."""

    __slots__ = ("by_dim", "by_revenue_dim", "dims", "revenue_dims", "rows")

    def __init__(self) -> None:
        self.rows: Contributions = {}
        self.by_dim: Fanned = {}
        self.by_revenue_dim: Fanned = {}
        self.dims: list[tuple[str, str]] = []
        self.revenue_dims: list[tuple[str, str]] = []


def _fan_out(out: Contributions, rows: Fanned, dims: list[tuple[str, str]]) -> None:
    for (table, head, tail), values in rows.items():
        for dim, value in dims:
            out[(table, (*head, dim, value, *tail))] = values


def _parts(state: LeadState) -> _Parts:
    parts = _Parts()
    if state.erased or state.test or state.merged_into is not None:
        return parts  # an erased person, a test lead, a lead merged into another: in no report
    last = state.last_touch()
    parts.dims = lead_dimensions(state, last=last)
    for funnel_id, entries in _by_funnel(state.entries).items():
        _stage_rows(parts, funnel_id, entries)
        _stay_rows(parts.rows, funnel_id, entries)
        _touch_rows(parts.rows, funnel_id, entries, state)
    _money_rows(parts, state, last)
    _revenue_time_rows(parts.rows, state)
    _subscription_rows(parts.rows, state)
    return parts


def _value(tp: Touchpoint | None, breakdown: Breakdown) -> str:
    if tp is None:
        return UNKNOWN
    value: str | None = getattr(tp, breakdown)
    return value if value else NONE


# The (first-touch, last-touch) dimension names of each breakdown.
_DIM_NAMES = {b: (dim_name(b, "first"), dim_name(b, "last")) for b in BREAKDOWNS}


def lead_dimensions(
    state: LeadState,
    breakdowns: tuple[Breakdown, ...] = BREAKDOWNS,
    last: Touchpoint | None = None,
) -> list[tuple[str, str]]:
    """(dimension, value) pairs a lead counts under: "all" plus one per breakdown and touch
    (`last`: the state's `last_touch()`, when the caller has it already)."""
    first = state.first_touch
    if last is None:
        last = state.last_touch()
    pairs = [ALL]
    for breakdown in breakdowns:
        first_name, last_name = _DIM_NAMES[breakdown]
        pairs.append((first_name, _value(first, breakdown)))
        pairs.append((last_name, _value(last, breakdown)))
    return pairs


RowKey = TypeVar("RowKey")


def diff(
    old: dict[RowKey, tuple[Number, ...]], new: dict[RowKey, tuple[Number, ...]]
) -> dict[RowKey, tuple[Number, ...]]:
    """new - old, row by row, leaving out rows that do not change."""
    out: dict[RowKey, tuple[Number, ...]] = {}
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        width = len(before if before is not None else after)  # type: ignore[arg-type]
        b = before or (0,) * width
        a = after or (0,) * width
        delta = tuple(x - y for x, y in zip(a, b, strict=True))
        if any(delta):
            out[key] = delta
    return out


def add(total: dict[RowKey, tuple[Number, ...]], deltas: dict[RowKey, tuple[Number, ...]]) -> None:
    """total += deltas, row by row; rows that sum to nothing are dropped."""
    for key, values in deltas.items():
        current = total.get(key)
        if current is None:
            if any(values):
                total[key] = values
            continue
        summed = tuple(map(operator.add, current, values))
        if any(summed):
            total[key] = summed
        else:
            del total[key]


def _add(out: dict[Any, tuple[Number, ...]], key: Any, values: tuple[Number, ...]) -> None:
    current = out.get(key)
    out[key] = values if current is None else tuple(map(operator.add, current, values))


def _by_funnel(entries: Iterable[StageEntry]) -> dict[str, list[StageEntry]]:
    grouped: dict[str, list[StageEntry]] = defaultdict(list)
    for entry in in_move_order(entries):
        grouped[entry.funnel_id].append(entry)
    return grouped


def first_entries(entries: list[StageEntry]) -> dict[str, StageEntry]:
    """Each stage's first entry (entries are in time order)."""
    first: dict[str, StageEntry] = {}
    for entry in entries:
        first.setdefault(entry.stage, entry)
    return first


def first_entry_at_or_after(
    entries: list[StageEntry], stage: str, moment: datetime
) -> datetime | None:
    """When the lead first entered `stage` at or after `moment`: the conversion that counts."""
    return next((e.at for e in entries if e.stage == stage and e.at >= moment), None)


def _stage_rows(parts: _Parts, funnel_id: str, entries: list[StageEntry]) -> None:
    now = entries[-1]
    _add(parts.rows, ("stage_counts", (funnel_id, now.stage)), (1,))
    first = first_entries(entries)
    for anchor in first.values():
        hour = quarter_of(anchor.at)
        _add(parts.by_dim, ("entry_counts", (funnel_id, anchor.stage, hour), ()), (1,))
        for target in first.values():
            if target.position <= anchor.position:
                continue
            reached = first_entry_at_or_after(entries, target.stage, anchor.at)
            if reached is None:
                continue
            counters = window_counters(reached - anchor.at)
            key = (funnel_id, anchor.stage, target.stage, hour)
            _add(parts.by_dim, ("pair_conversions", key, ()), counters)


def _stay_rows(out: Contributions, funnel_id: str, entries: list[StageEntry]) -> None:
    """Completed stays: from entering a stage to entering the next different one."""
    start: StageEntry | None = None
    for entry in entries:
        if start is not None and entry.stage != start.stage:
            bucket = stay_bucket(entry.at - start.at)
            _add(out, ("stage_stays", (funnel_id, start.stage, quarter_of(start.at), bucket)), (1,))
            start = entry
        elif start is None:
            start = entry


def _orders(state: LeadState) -> list[datetime]:
    return sorted(m.at for m in state.money.values() if m.kind != "refund")


def stage_at(entries: list[StageEntry], moment: datetime) -> str | None:
    """The stage the lead was in at `moment` (its latest entry at or before it, entries in
    move order); None before its first entry."""
    current = None
    for entry in entries:
        if entry.at > moment:
            break
        current = entry.stage
    return current


def _touch_rows(
    out: Contributions, funnel_id: str, entries: list[StageEntry], state: LeadState
) -> None:
    """Conversion to an order after a touch at a stage, against leads of that stage no touch
    reached (anchored at their entry into the stage). Offline touches count as touches of
    the playbook "offline:<type>" at the stage the lead was in when they happened."""
    orders = _orders(state)
    offline = sorted((t.at, t.activity_type) for t in state.offline.values())
    offline_stages = [(at, kind, stage_at(entries, at)) for at, kind in offline]
    for stage, entry in first_entries(entries).items():
        first_send: dict[str, datetime] = {}
        for touch in sorted(state.touches.values(), key=lambda t: t.at):
            if touch.stage == stage:
                first_send.setdefault(touch.playbook, touch.at)
        for at, kind, at_stage in offline_stages:
            if at_stage == stage:
                first_send.setdefault(f"{OFFLINE}{kind}", at)
        anchors = first_send or {BASELINE: entry.at}
        for playbook, anchor in anchors.items():
            order = next((o for o in orders if o >= anchor), None)
            counters = NOT_CONVERTED if order is None else window_counters(order - anchor)
            key = ("touch_effect", (funnel_id, stage, playbook, quarter_of(anchor)))
            _add(out, key, (1, *counters))


def _money_rows(parts: _Parts, state: LeadState, last: Touchpoint | None) -> None:
    orders = _orders(state)
    if not state.money:
        return
    funnel_id = state.funnel_id or (state.entries[0].funnel_id if state.entries else "")
    parts.revenue_dims = lead_dimensions(state, REVENUE_BREAKDOWNS, last)
    if orders:
        first_order = orders[0]
        before = sum(1 for at in state.interactions.values() if at < first_order)
        key = (
            "purchase_interactions",
            (funnel_id, quarter_of(first_order), min(before, INTERACTIONS_CAP)),
        )
        _add(parts.rows, key, (1, before))
        repeat = 1 if len(orders) >= 2 else 0
        _add(parts.by_revenue_dim, ("customer_counts", (funnel_id,), ()), (1, repeat))
    by_currency: dict[str, list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0, 0])
    for money in state.money.values():
        totals = by_currency[money.currency]
        if money.kind == "refund":
            totals[0] -= money.amount
            totals[2] += 1
        else:
            totals[0] += money.amount
            totals[1] += 1
    for currency, (revenue, order_count, refunds) in by_currency.items():
        customer = 1 if order_count else 0
        row = (revenue, order_count, refunds, customer)
        _add(parts.by_revenue_dim, ("revenue", (funnel_id,), (currency,)), row)


def _money_funnel(state: LeadState) -> str:
    return state.funnel_id or (state.entries[0].funnel_id if state.entries else "")


def _revenue_time_rows(out: Contributions, state: LeadState) -> None:
    """Revenue by the quarter hour of each order and refund, per currency: net revenue,
    orders, refunds; a customer is new at their first order in a currency and becomes a
    repeat customer at their second (so a period's new and repeat customers add up, over
    all periods, to the lifetime customers and repeat customers)."""
    if not state.money:
        return
    funnel_id = _money_funnel(state)
    seen: dict[str, int] = defaultdict(int)
    for money in sorted(state.money.values(), key=lambda m: (m.at, m.kind, m.amount)):
        key = ("revenue_by_time", (funnel_id, quarter_of(money.at), money.currency))
        if money.kind == "refund":
            _add(out, key, (-money.amount, 0, 1, 0, 0))
            continue
        seen[money.currency] += 1
        nth = seen[money.currency]
        _add(out, key, (money.amount, 1, 0, 1 if nth == 1 else 0, 1 if nth == 2 else 0))


def is_subscriber(state: LeadState) -> bool:
    """A lead of the subscription funnel, or one that renewed or cancelled, with an order."""
    has_order = any(m.kind != "refund" for m in state.money.values())
    renews = any(m.kind == "renewal" for m in state.money.values())
    return has_order and (
        _money_funnel(state) == SUBSCRIPTION_FUNNEL or renews or bool(state.cancellations)
    )


def _subscription_rows(out: Contributions, state: LeadState) -> None:
    """MRR changes by quarter hour and currency. Each payment (the first order, a renewal) is
    one month's charge: it starts the subscription (+amount, +1 subscriber, +1 new) or sets
    its amount (+new - old); a cancellation ends it (-amount, -1 subscriber, +1
    cancellation); a payment after a cancellation starts it again. MRR at an instant is the
    sum of the changes before it; refunds do not change it."""
    if not is_subscriber(state):
        return
    funnel_id = _money_funnel(state)
    moments: list[tuple[datetime, int, Decimal, str]] = [
        (m.at, 0, m.amount, m.currency) for m in state.money.values() if m.kind != "refund"
    ]
    moments += [(at, 1, Decimal(0), "") for at in state.cancellations.values()]
    active: tuple[Decimal, str] | None = None
    for at, kind, amount, currency in sorted(moments):
        quarter = quarter_of(at)
        if kind == 1:  # a cancellation (after a payment at the same instant)
            if active is not None:
                key = ("subscription_changes", (funnel_id, quarter, active[1]))
                _add(out, key, (-active[0], -1, 0, 1))
                active = None
            continue
        if active is None:
            _add(out, ("subscription_changes", (funnel_id, quarter, currency)), (amount, 1, 1, 0))
        elif active[1] == currency:
            _add(
                out,
                ("subscription_changes", (funnel_id, quarter, currency)),
                (amount - active[0], 0, 0, 0),
            )
        else:  # the same subscription, billed in another currency from now on
            _add(
                out,
                ("subscription_changes", (funnel_id, quarter, active[1])),
                (-active[0], -1, 0, 0),
            )
            _add(out, ("subscription_changes", (funnel_id, quarter, currency)), (amount, 1, 0, 0))
        active = (amount, currency)
