"""What one lead contributes to the aggregates: order-independent, exact at the edges."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadCaptured,
    LeadErased,
    LeadUpdated,
    StageChanged,
    Utm,
    examples,
)
from reporting.domain.windows import WINDOW_COLUMNS, window_counters
from reporting.projection.models.contributions import Contributions, add, contributions, diff
from reporting.projection.models.lead_state import LeadState, apply

LEAD = UUID("00000000-0000-4000-8000-000000000001")
T0 = datetime(2026, 9, 10, 8, 15, tzinfo=UTC)
POSITIONS = {"awareness": 0, "interest": 1, "desire": 2, "action": 3}


def stage(name: str, at: datetime) -> StageChanged:
    return StageChanged(
        lead_id=LEAD,
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=None,
        to_stage=name,
        to_stage_position=POSITIONS[name],
        reason="t",
        changed_at=at,
    )


def captured(source: str = "google") -> LeadCaptured:
    return LeadCaptured(
        lead_id=LEAD,
        submission_id=uuid4(),
        form_id="demo",
        funnel_id="digital-sales",
        email="a@example.com",
        captured_at=T0,
        utm=Utm(source=source, campaign="c1"),
    )


def purchase(at: datetime, order: str, amount: str = "10.00") -> ActivityRecorded:
    return examples.activity_recorded(
        lead_id=LEAD,
        activity_type="purchase_completed",
        occurred_at=at,
        amount=Decimal(amount),
        currency="EUR",
        order_id=order,
    )


def state_of(events: list[EventData]) -> LeadState:
    state = LeadState()
    for event in events:
        state = apply(state, event)
    return state


def pair(
    c: Contributions, source: str, target: str, dim: str = "all", value: str = ""
) -> dict[str, int]:
    hits = {
        k: v
        for k, v in c.items()
        if k[0] == "pair_conversions" and k[1][1:3] == (source, target) and k[1][4:] == (dim, value)
    }
    assert len(hits) <= 1
    return dict(zip(WINDOW_COLUMNS, next(iter(hits.values())), strict=True)) if hits else {}


def test_the_window_edge_is_inside_and_a_microsecond_later_is_not() -> None:
    at_edge = dict(zip(WINDOW_COLUMNS, window_counters(timedelta(days=14)), strict=True))
    past = dict(
        zip(WINDOW_COLUMNS, window_counters(timedelta(days=14, microseconds=1)), strict=True)
    )
    assert (at_edge["c7d"], at_edge["c14d"], at_edge["c30d"], at_edge["c_any"]) == (0, 1, 1, 1)
    assert (past["c14d"], past["c30d"]) == (0, 1)


def test_the_same_events_in_any_order_and_repeated_give_the_same_contributions() -> None:
    events: list[EventData] = [
        captured(),
        stage("awareness", T0),
        stage("interest", T0 + timedelta(days=2)),
        stage("action", T0 + timedelta(days=3)),
        purchase(T0 + timedelta(days=3), "o1"),
        LeadUpdated(
            lead_id=LEAD,
            submission_id=uuid4(),
            last_touch_utm=Utm(source="newsletter"),
            updated_at=T0 + timedelta(days=1),
        ),
    ]
    expected = contributions(state_of(events))
    rng = random.Random(3)
    for _ in range(30):
        shuffled = events + rng.sample(events, 2)
        rng.shuffle(shuffled)
        assert contributions(state_of(shuffled)) == expected


def test_applying_each_diff_in_turn_sums_to_the_final_contributions() -> None:
    events: list[EventData] = [
        stage("interest", T0),
        captured(),
        stage("awareness", T0),
        stage("action", T0 + timedelta(days=20)),
        purchase(T0, "o1"),
        purchase(T0 + timedelta(days=40), "o2"),
    ]
    for order in itertools.islice(itertools.permutations(events), 0, 720, 37):
        total: dict[tuple[str, tuple[object, ...]], tuple[int | Decimal, ...]] = {}
        state = LeadState()
        for event in order:
            new = apply(state, event)
            for key, delta in diff(contributions(state), contributions(new)).items():
                before = total.get(key, (0,) * len(delta))
                total[key] = tuple(a + b for a, b in zip(before, delta, strict=True))
            state = new
        assert {k: v for k, v in total.items() if any(v)} == contributions(state)


def test_a_batch_sums_its_diffs_into_what_one_diff_per_event_adds() -> None:
    """What handle_batch writes for a lead's events at once (one summed difference) equals
    the sum of the differences `handle` writes event by event."""
    events: list[EventData] = [
        captured(),
        stage("awareness", T0),
        stage("interest", T0 + timedelta(days=2)),
        purchase(T0 + timedelta(days=3), "o1"),
        stage("action", T0 + timedelta(days=14)),
    ]
    one_by_one: Contributions = {}
    state = LeadState()
    for event in events:
        new = apply(state, event)
        add(one_by_one, diff(contributions(state), contributions(new)))
        state = new
    batched: Contributions = {}
    add(batched, diff(contributions(LeadState()), contributions(state)))
    assert one_by_one == batched == contributions(state)
    # Rows whose deltas cancel out are dropped, not kept at zero.
    erased = apply(state, LeadErased(lead_id=LEAD, request_id=uuid4(), erased_at=T0))
    add(batched, diff(contributions(state), contributions(erased)))
    assert batched == {}


def test_the_first_conversion_after_the_first_entry_counts_once() -> None:
    c = contributions(
        state_of(
            [
                stage(
                    "interest", T0 - timedelta(days=1)
                ),  # before the first step: not a conversion
                stage("awareness", T0),
                stage("interest", T0 + timedelta(days=10)),
                stage("interest", T0 + timedelta(days=12)),  # converts twice: the first counts
            ]
        )
    )
    counts = pair(c, "awareness", "interest")
    assert (counts["c7d"], counts["c14d"], counts["c_any"]) == (0, 1, 1)
    entries = [
        v
        for k, v in c.items()
        if k[0] == "entry_counts" and k[1][1] == "interest" and k[1][3] == "all"
    ]
    assert entries == [(1,)]


def test_breakdowns_follow_first_and_last_touch() -> None:
    c = contributions(
        state_of(
            [
                captured("google"),
                stage("awareness", T0),
                stage("interest", T0 + timedelta(hours=1)),
                LeadUpdated(
                    lead_id=LEAD,
                    submission_id=uuid4(),
                    last_touch_utm=Utm(source="newsletter"),
                    updated_at=T0 + timedelta(minutes=30),
                ),
            ]
        )
    )
    assert pair(c, "awareness", "interest", "first_source", "google")["c1d"] == 1
    assert pair(c, "awareness", "interest", "last_source", "newsletter")["c1d"] == 1
    assert pair(c, "awareness", "interest", "last_campaign", "(none)")["c1d"] == 1


def test_an_erased_lead_contributes_nothing_and_stays_erased() -> None:
    erased = state_of(
        [
            captured(),
            stage("awareness", T0),
            LeadErased(lead_id=LEAD, request_id=uuid4(), erased_at=T0),
            stage("interest", T0 + timedelta(days=1)),
        ]
    )
    assert erased == LeadState(erased=True)
    assert contributions(erased) == {}


def test_revenue_counts_an_order_id_once_and_nets_refunds() -> None:
    refund = ActivityRecorded(
        lead_id=LEAD,
        activity_id=uuid4(),
        activity_type="refund_issued",
        occurred_at=T0,
        recorded_at=T0,
        amount=Decimal("5"),
        currency="EUR",
    )
    c = contributions(
        state_of(
            [
                captured(),
                purchase(T0, "o1"),
                purchase(T0, "o1"),
                purchase(T0 + timedelta(days=30), "o2"),
                refund,
            ]
        )
    )
    assert c[("revenue", ("digital-sales", "all", "", "EUR"))] == (Decimal("15.00"), 2, 1, 1)
    assert c[("customer_counts", ("digital-sales", "all", ""))] == (1, 1)


def test_a_test_lead_counts_in_no_report_whatever_order_its_events_come_in() -> None:
    from funnel_contracts import LeadCapturedV2, Sealed

    test_capture = LeadCapturedV2(
        lead_id=LEAD, submission_id=uuid4(), form_id="demo", funnel_id="digital-sales",
        personal_data=Sealed(alg="A256GCM", nonce="AAAAAAAAAAAAAAAA", ciphertext="AAAA"),
        has_email=True, has_phone=False, captured_at=T0, test=True,
    )  # fmt: skip
    events: list[EventData] = [
        test_capture,
        stage("awareness", T0),
        stage("action", T0 + timedelta(days=1)),
        purchase(T0 + timedelta(days=1), "o-1"),
    ]
    real = LeadState()
    for event in [captured(), *events[1:]]:
        real = apply(real, event)
    assert contributions(real)  # the same person, not a test: counted
    for order in itertools.permutations(events):
        state = LeadState()
        total: Contributions = {}
        for event in order:
            new = apply(state, event)
            add(total, diff(contributions(state), contributions(new)))
            state = new
        assert state.test
        assert {k: v for k, v in total.items() if any(v)} == {}, order


def test_a_merge_counts_the_person_once_with_what_both_leads_did() -> None:
    from reporting.projection.models.lead_state import fold

    other_id = UUID("00000000-0000-4000-8000-000000000002")
    survivor = LeadState()
    for event in (captured("fair"), stage("awareness", T0), purchase(T0, "o-1")):
        survivor = apply(survivor, event)
    other = LeadState()
    earlier = captured("ads").model_copy(
        update={"lead_id": other_id, "captured_at": T0 - timedelta(days=3)}
    )
    late_buy = purchase(T0 + timedelta(days=2), "o-2").model_copy(update={"lead_id": other_id})
    for event in (earlier, stage("awareness", T0 - timedelta(days=3)), late_buy):
        other = apply(other, event)
    before: Contributions = {}
    add(before, contributions(survivor))
    add(before, contributions(other))

    merged, gone = fold(survivor, other, LEAD)

    assert gone.merged_into == LEAD
    assert contributions(gone) == {}
    assert apply(gone, purchase(T0, "o-3")) == gone  # a straggler counts nowhere
    assert sorted(merged.money) == sorted({*survivor.money, *other.money})  # both purchases
    assert merged.first_touch is not None
    assert merged.first_touch.source == "ads"  # the earlier first touch
    assert [e.at for e in merged.entries] == [T0]  # one stage history: the survivor's
    after = contributions(merged)
    assert after != contributions(survivor)
    # fewer lead rows than the two leads together (the person counted once)
    assert len(after) < len(before)
