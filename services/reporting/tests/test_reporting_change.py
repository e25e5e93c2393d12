"""`change`, what the projection writes for a lead, equals the difference of its full
contributions before and after, whatever the events, their order and the lead's fate."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadCaptured,
    LeadErased,
    LeadUpdated,
    StageChanged,
    TouchClicked,
    TouchOpened,
    TouchSent,
    Utm,
)
from reporting.projection.models.contributions import Deltas, add, change, contributions, diff
from reporting.projection.models.lead_state import LeadState, apply, fold

LEAD = UUID("00000000-0000-4000-8000-000000000001")
OTHER = UUID("00000000-0000-4000-8000-000000000002")
T0 = datetime(2026, 9, 10, 8, 15, tzinfo=UTC)
STAGES = ("awareness", "interest", "desire", "action", "loyalty")
SOURCES = ("google", "facebook", "newsletter", None)
ACTIVITIES = (
    "page_viewed",
    "pricing_viewed",
    "purchase_completed",
    "subscription_renewed",
    "refund_issued",
    "subscription_cancelled",
    "call_logged",
)


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _event(rng: random.Random, lead: UUID) -> EventData:
    at = T0 + timedelta(days=rng.randrange(60), minutes=rng.choice((0, 7, 15, 90)))
    kind = rng.randrange(7)
    if kind == 0:
        source = rng.choice(SOURCES)
        return LeadCaptured(
            lead_id=lead,
            submission_id=_uuid(rng),
            form_id=rng.choice(("demo", "ebook")),
            funnel_id="digital-sales",
            email="a@example.com",
            captured_at=at,
            utm=Utm(source=source, campaign="c1" if source else None),
            landing_page=rng.choice(("https://x.example/a", None)),
        )
    if kind == 1:
        return LeadUpdated(
            lead_id=lead,
            submission_id=rng.choice((_uuid(rng), None)),
            last_touch_utm=Utm(source=rng.choice(SOURCES)),
            updated_at=at,
        )
    if kind == 2:
        activity = rng.choice(ACTIVITIES)
        money = activity in ("purchase_completed", "subscription_renewed", "refund_issued")
        return ActivityRecorded(
            lead_id=lead,
            activity_id=_uuid(rng),
            activity_type=activity,
            occurred_at=at,
            recorded_at=at,
            amount=Decimal(rng.choice(("10.00", "49.90"))) if money else None,
            currency=rng.choice(("EUR", "USD")) if money else None,
            order_id=rng.choice(("o1", "o2", None)) if activity == "purchase_completed" else None,
        )
    if kind == 3:
        touch = UUID(int=rng.randrange(3) + 1, version=4)
        return rng.choice(
            (
                TouchSent(
                    lead_id=lead,
                    touch_id=touch,
                    playbook=rng.choice(("nurture", "offer")),
                    channel="email",
                    template="t",
                    funnel_id="digital-sales",
                    stage=rng.choice(STAGES),
                    sent_at=at,
                ),
                TouchOpened(lead_id=lead, touch_id=touch, opened_at=at),
                TouchClicked(
                    lead_id=lead, touch_id=touch, url="https://x.example/o", clicked_at=at
                ),
            )
        )
    return _moved(lead, rng.randrange(len(STAGES)), at)


def _moved(lead: UUID, to: int, at: datetime) -> StageChanged:
    """The lead enters stage `to` from the one before it."""
    return StageChanged(
        lead_id=lead,
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=STAGES[to - 1] if to else None,
        to_stage=STAGES[to],
        to_stage_position=to,
        reason="t",
        changed_at=at,
    )


def _expected(old: LeadState, new: LeadState) -> dict[object, object]:
    return dict(diff(contributions(old), contributions(new)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), length=st.integers(1, 30))
def test_change_is_the_difference_of_the_contributions_at_every_step(
    seed: int, length: int
) -> None:
    rng = random.Random(seed)
    leads = {LEAD: LeadState(), OTHER: LeadState()}
    steps = 0
    for _ in range(length):
        lead = rng.choice((LEAD, OTHER))
        old = leads[lead]
        new = apply(old, _event(rng, lead))
        if rng.random() < 0.05:
            new = new.model_copy(update={"test": not new.test})  # an admin marks it (or not)
        assert change(old, new) == _expected(old, new)
        assert change(new, old) == _expected(new, old)
        leads[lead] = new
        steps += 1
    survivor, other = fold(leads[LEAD], leads[OTHER], LEAD)
    assert change(leads[LEAD], survivor) == _expected(leads[LEAD], survivor)
    assert change(leads[OTHER], other) == _expected(leads[OTHER], other)
    erased = apply(leads[LEAD], LeadErased(lead_id=LEAD, request_id=OTHER, erased_at=T0))
    assert change(leads[LEAD], erased) == _expected(leads[LEAD], erased)
    assert steps == length


def test_a_new_first_touch_moves_every_row_of_the_lead_to_its_new_dimensions() -> None:
    """A stage history known before the capture (topics are read independently): the capture
    moves each entry and pair row from "(unknown)" to the source, "all" rows stay."""
    rng = random.Random(5)
    moved = LeadState()
    for to in range(3):
        moved = apply(moved, _moved(LEAD, to, T0 + timedelta(days=to)))
    capture = _event(rng, LEAD)
    while not isinstance(capture, LeadCaptured) or capture.utm.source is None:
        capture = _event(rng, LEAD)
    captured = apply(moved, capture)
    delta = change(moved, captured)
    assert delta == _expected(moved, captured)
    entries = {k[1] for k in delta if k[0] == "entry_counts"}
    assert ("digital-sales", "awareness", T0, "first_source", "(unknown)") in entries
    assert ("digital-sales", "awareness", T0, "first_source", capture.utm.source) in entries
    assert not any(k[1][3] == "all" for k in delta if k[0] in ("entry_counts", "pair_conversions"))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), length=st.integers(1, 40))
def test_a_batch_of_changes_summed_before_the_fan_out_is_the_sum_of_the_changes(
    seed: int, length: int
) -> None:
    """What the projection writes for a batch (`Deltas`: the rows under each dimension summed
    per group of pairs, fanned out by the store) equals every lead's `change` added in turn,
    merges and erasures included; and a lead's events applied to its own copy in place give
    the state they give one copy at a time."""
    rng = random.Random(seed)
    leads = {LEAD: LeadState(), OTHER: LeadState()}
    batch, reference = Deltas(), {}
    for _ in range(length):
        lead = rng.choice((LEAD, OTHER))
        events = [_event(rng, lead) for _ in range(rng.randrange(1, 4))]
        old = new = owned = leads[lead]
        for event in events:
            new = apply(new, event)
            owned = apply(owned, event, owned=owned is not old)
        assert owned == new
        batch.add_change(old, new)
        add(reference, change(old, new))
        leads[lead] = new
    survivor, other = fold(leads[LEAD], leads[OTHER], LEAD)
    for before, after in ((leads[LEAD], survivor), (leads[OTHER], other)):
        batch.add_change(before, after)
        add(reference, change(before, after))
    erased = apply(survivor, LeadErased(lead_id=LEAD, request_id=OTHER, erased_at=T0))
    batch.add_change(survivor, erased)
    add(reference, change(survivor, erased))
    assert batch.expanded() == reference
    # Groups may cancel out only once fanned out (the store's sums leave those rows out).
    assert bool(batch) or not reference


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), length=st.integers(1, 12))
def test_the_last_touch_is_the_latest_with_utm_with_the_latest_form_and_page(
    seed: int, length: int
) -> None:
    """`last_touch` in one pass equals its definition: the latest touchpoint with UTM by
    (time, key), carrying the form and landing page of the latest touchpoints that had one."""
    rng = random.Random(seed)
    state = LeadState()
    for _ in range(length):
        event = _event(rng, LEAD)
        if isinstance(event, LeadCaptured | LeadUpdated):
            state = apply(state, event)
    ordered = sorted(state.touchpoints.items(), key=lambda item: (item[1].at, item[0]))
    with_utm = [tp for _, tp in ordered if tp.has_utm]
    last = state.last_touch()
    if not with_utm:
        assert last == state.first_touch
        return
    assert last is not None
    assert last.model_dump(exclude={"form", "landing_page"}) == with_utm[-1].model_dump(
        exclude={"form", "landing_page"}
    )
    assert last.form == next((tp.form for _, tp in reversed(ordered) if tp.form), None)
    assert last.landing_page == next(
        (tp.landing_page for _, tp in reversed(ordered) if tp.landing_page), None
    )
