"""Realistic funnel event streams for reporting's exactness test and benchmark.

Leads arrive from a mix of sources and campaigns, move through the digital-sales stages with
drop-offs and random delays, buy, renew (a third of renewals then cancel), get refunds and
touches; a share of them re-enter a
stage, convert twice, resubmit from another campaign, or arrive late and duplicated. With
`merges`, that many people also became a second lead that was then merged into their first
(`funnel.lead.merged.v1`, published after everything else). With `test_leads`, that many
test leads (`funnel.lead.captured.v2` with `test`, decision 0032) live a whole journey like
anyone; half of their captures are published only after the rest of the first phase, so
what their earlier events added must be taken back. With `offline`, people at the business
log calls, meetings, events attended and notes about a share of the people (offline
touches), some at the very instant of a stage entry, some before the first one. The
named edge cases are always present: a conversion exactly at the 14-day edge, a stage entered
before the first step, a lead that converts twice, a lead captured at 00:30 UTC, two leads on
either side of midnight in India (18:30 UTC).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

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
    TouchClicked,
    TouchOpened,
    TouchSent,
    Utm,
)
from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES

FUNNEL = "digital-sales"
STAGES = ("awareness", "interest", "desire", "action", "loyalty")
SOURCES = {
    "google": ("cpc", ("brand", "generic", "retarget")),
    "facebook": ("paid-social", ("spring", "lookalike")),
    "newsletter": ("email", ("weekly",)),
    "partner": ("referral", ("affiliates",)),
}
START = datetime(2026, 9, 1, tzinfo=UTC)


@dataclass
class Dataset:
    """Events in publish order (late ones out of time order), plus ids of the edge cases."""

    events: list[EventData] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)  # indexes published twice
    edge: dict[str, UUID] = field(default_factory=dict)
    # Where the merges begin in `events`: each merge, the tracker's `merged` move it causes
    # and the other lead's events still in flight come after this index (published once what
    # precedes it is projected, as a merge follows both leads), and from `erase_phase` on, a
    # survivor's later erasure (a day after its merge: projected after it).
    merge_phase: int | None = None
    erase_phase: int | None = None
    merged: dict[UUID, UUID] = field(default_factory=dict)  # other lead -> survivor
    # Test leads, and where their late captures begin (published once what precedes them
    # is projected: the capture then takes back what the lead's other events added).
    test_leads: set[UUID] = field(default_factory=set)
    late_capture_phase: int | None = None

    @property
    def phases(self) -> tuple[int | None, ...]:
        """Where each later phase begins (for `publish_in_phases`)."""
        return (self.late_capture_phase, self.merge_phase, self.erase_phase)


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _stage(lead: UUID, stage: str, at: datetime, prev: str | None) -> StageChanged:
    return StageChanged(
        lead_id=lead,
        funnel_id=FUNNEL,
        funnel_version=1,
        from_stage=prev,
        to_stage=stage,
        to_stage_position=STAGES.index(stage),
        reason="generated",
        changed_at=at,
    )


def _activity(
    rng: random.Random,
    lead: UUID,
    kind: str,
    at: datetime,
    amount: str | None = None,
    order: str | None = None,
) -> ActivityRecorded:
    return ActivityRecorded(
        lead_id=lead,
        activity_id=_uuid(rng),
        activity_type=kind,
        occurred_at=at,
        recorded_at=at,
        amount=Decimal(amount) if amount else None,
        currency="EUR" if amount else None,
        order_id=order,
    )


def _capture(rng: random.Random, lead: UUID, at: datetime) -> LeadCaptured:
    source = rng.choice(list(SOURCES))
    medium, campaigns = SOURCES[source]
    form = rng.choice(("demo", "ebook", "webinar"))
    return LeadCaptured(
        lead_id=lead,
        submission_id=_uuid(rng),
        form_id=form,
        funnel_id=FUNNEL,
        email=f"{lead.hex[:10]}@example.com",
        captured_at=at,
        utm=Utm(source=source, medium=medium, campaign=rng.choice(campaigns)),
        landing_page=f"https://shop.example/{form}",
    )


def _journey(rng: random.Random, lead: UUID, captured: datetime) -> list[EventData]:
    """One lead's life; delays are whole minutes, sometimes exactly whole days."""
    events: list[EventData] = [
        _capture(rng, lead, captured),
        _stage(lead, STAGES[0], captured, None),
    ]
    at, prev = captured, STAGES[0]
    orders = 0
    for stage in STAGES[1:]:
        if rng.random() < 0.45:  # drop-off
            break
        delay = timedelta(days=rng.choice((0, 1, 2, 5, 13, 14, 15, 20)))
        at = at + delay + timedelta(minutes=rng.choice((0, 0, 7, 90, 600)))
        if rng.random() < 0.4:
            events.append(_activity(rng, lead, "pricing_viewed", at - timedelta(minutes=5)))
        if rng.random() < 0.3:
            touch = _uuid(rng)
            sent = at - timedelta(hours=3)
            events.append(
                TouchSent(
                    lead_id=lead,
                    touch_id=touch,
                    playbook=rng.choice(("nurture", "offer")),
                    channel="email",
                    template="t",
                    funnel_id=FUNNEL,
                    stage=prev,
                    sent_at=sent,
                )
            )
            events.append(
                TouchOpened(lead_id=lead, touch_id=touch, opened_at=sent + timedelta(hours=1))
            )
            if rng.random() < 0.5:
                events.append(
                    TouchClicked(
                        lead_id=lead,
                        touch_id=touch,
                        url="https://x.example/o",
                        clicked_at=sent + timedelta(hours=2),
                    )
                )
        events.append(_stage(lead, stage, at, prev))
        if stage == "action":
            orders += 1
            events.append(
                _activity(rng, lead, "purchase_completed", at, "49.90", f"o-{lead.hex[:8]}-1")
            )
        if stage == "loyalty" and rng.random() < 0.5:
            events.append(
                _activity(rng, lead, "subscription_renewed", at + timedelta(days=30), "19.00")
            )
            if lead.int % 3 == 0:  # a third of the renewals end (no draw: the rest stays as it was)
                cancelled = at + timedelta(days=45, minutes=lead.int % 1440)
                events.append(
                    ActivityRecorded(
                        lead_id=lead,
                        activity_id=UUID(int=(lead.int + 7) % 2**128, version=4),
                        activity_type="subscription_cancelled",
                        occurred_at=cancelled,
                        recorded_at=cancelled,
                    )
                )
        prev = stage
    if orders and rng.random() < 0.1:
        events.append(_activity(rng, lead, "refund_issued", at + timedelta(days=3), "49.90"))
    if rng.random() < 0.15:  # resubmits from another campaign: a new last touch
        source = rng.choice(list(SOURCES))
        events.append(
            LeadUpdated(
                lead_id=lead,
                submission_id=_uuid(rng),
                form_id="ebook",
                last_touch_utm=Utm(
                    source=source, medium=SOURCES[source][0], campaign=SOURCES[source][1][0]
                ),
                updated_at=captured + timedelta(days=2),
            )
        )
    if rng.random() < 0.05:  # lost, then recycled back into interest: a re-entry
        lost_at = at + timedelta(days=3)
        events.append(_stage(lead, "interest", lost_at + timedelta(days=10), prev))
    return events


def generate(
    leads: int,
    seed: int = 7,
    days: int = 60,
    merges: int = 0,
    test_leads: int = 0,
    offline: bool = False,
) -> Dataset:
    rng = random.Random(seed)
    data = Dataset()
    people: list[UUID] = []
    for _ in range(leads):
        lead = _uuid(rng)
        captured = START + timedelta(minutes=rng.randrange(days * 24 * 60))
        data.events += _journey(rng, lead, captured)
        people.append(lead)
    _edge_cases(rng, data)
    # Generators of their own: the data without them stays what it was for a seed.
    late_captures = _test_leads(random.Random(seed + 2), data, test_leads, days)
    # Late events: a share of stage events published after everything else.
    late = [
        i for i, e in enumerate(data.events) if isinstance(e, StageChanged) and rng.random() < 0.05
    ]
    moved = [data.events[i] for i in late]
    data.events = [e for i, e in enumerate(data.events) if i not in set(late)] + moved
    if merges:
        # A generator of its own: the data without merges stays what it was for a seed.
        _merges(random.Random(seed + 1), data, people, merges)
    if offline:
        _offline_touches(random.Random(seed + 3), data)
    if late_captures:
        at = data.merge_phase if data.merge_phase is not None else len(data.events)
        data.events[at:at] = late_captures
        data.late_capture_phase = at
        if data.merge_phase is not None:
            data.merge_phase += len(late_captures)
        if data.erase_phase is not None:
            data.erase_phase += len(late_captures)
    data.duplicates = [i for i in range(len(data.events)) if rng.random() < 0.03]
    return data


def _test_leads(rng: random.Random, data: Dataset, count: int, days: int) -> list[EventData]:
    """`count` test leads with whole journeys (stage moves, touches, orders, renewals); their
    captures are v2 with `test`. Returns the captures held back for a later phase (half)."""
    held_back: list[EventData] = []
    for n in range(count):
        lead = _uuid(rng)
        captured = START + timedelta(minutes=rng.randrange(days * 24 * 60))
        journey = _journey(rng, lead, captured)
        capture = journey[0]
        assert isinstance(capture, LeadCaptured)
        test_capture = _as_test(capture)
        if n % 2:
            held_back.append(test_capture)
            data.events += journey[1:]
        else:
            data.events += [test_capture, *journey[1:]]
        data.test_leads.add(lead)
    return held_back


def _as_test(capture: LeadCaptured) -> LeadCapturedV2:
    """The capture of a test lead (v2 only carries the flag)."""
    return _v2(capture, test=True)


def _v2(capture: LeadCaptured, *, test: bool = False) -> LeadCapturedV2:
    """The same capture as lead-intake writes it now: personal data sealed, the rest alike."""
    return LeadCapturedV2(
        lead_id=capture.lead_id,
        personal_data=_SEALED,
        has_email=True,
        has_phone=False,
        landing_page=capture.landing_page,
        submission_id=capture.submission_id,
        form_id=capture.form_id,
        funnel_id=capture.funnel_id,
        utm=capture.utm,
        captured_at=capture.captured_at,
        test=test,
    )


def _offline_touches(rng: random.Random, data: Dataset) -> None:
    """Calls, meetings, events attended and notes logged about a share of the people that
    have stage moves (a merged lead's too, before its merge): at a random moment around
    their journey, at the very instant they entered a stage (the touch counts at the stage
    entered), or before their first entry (a touch at no stage). Half the merged leads also
    get one logged just before their merge that arrives after it (it counts for the
    survivor)."""
    first_phase = data.merge_phase if data.merge_phase is not None else len(data.events)
    moves: dict[UUID, list[datetime]] = {}
    for e in data.events[:first_phase]:
        if isinstance(e, StageChanged):
            moves.setdefault(e.lead_id, []).append(e.changed_at)
    logged: list[EventData] = []
    for lead, times in moves.items():
        if rng.random() >= 0.35:
            continue
        first, last = min(times), max(times)
        for _ in range(rng.choice((1, 1, 2, 3))):
            kind = rng.random()
            if kind < 0.25:
                at = rng.choice(times)
            elif kind < 0.35:
                at = first - timedelta(hours=rng.randrange(1, 48))
            else:
                span = int((last - first).total_seconds() // 60) + 5 * 24 * 60
                at = first + timedelta(minutes=rng.randrange(span))
            logged.append(_offline(rng, lead, at))
    in_flight: list[EventData] = []
    for e in data.events[first_phase:]:
        if isinstance(e, LeadMerged) and rng.random() < 0.5:
            in_flight.append(_offline(rng, e.merged_lead_id, e.merged_at - timedelta(minutes=3)))
    data.events[first_phase:first_phase] = logged
    if data.merge_phase is not None:
        data.merge_phase += len(logged)
    if data.erase_phase is not None:
        data.erase_phase += len(logged)
        data.events[data.erase_phase : data.erase_phase] = in_flight
        data.erase_phase += len(in_flight)


def _offline(rng: random.Random, lead: UUID, at: datetime) -> ActivityRecorded:
    return ActivityRecorded(
        lead_id=lead,
        activity_id=_uuid(rng),
        activity_type=rng.choice(OFFLINE_ACTIVITY_TYPES),
        occurred_at=at,
        recorded_at=at + timedelta(minutes=rng.randrange(0, 120)),
        actor=rng.choice(("ana", "ben")),
        properties={"outcome": rng.choice(("reached", "voicemail", "booked"))},
    )


def _stage_at(events: list[EventData], lead: UUID, moment: datetime) -> str | None:
    """The stage `lead` was in at `moment` (its latest entry at or before it)."""
    entries = sorted(
        (e.changed_at, e.to_stage_position, e.to_stage)
        for e in events
        if isinstance(e, StageChanged) and e.lead_id == lead and e.changed_at <= moment
    )
    return entries[-1][2] if entries else None


def _merges(rng: random.Random, data: Dataset, people: list[UUID], count: int) -> None:
    """`count` people who also became a newer lead (known by phone alone, from another
    campaign), merged into their first lead once both were projected: the newer lead's
    capture (sometimes back-dated before the survivor's, as an import may), its entry and
    maybe a step further, a page view, a touch, an order of its own or the survivor's same
    order reported again; then the merge, the tracker's `merged` move when the newer lead
    was further along, an order and a page view of the newer lead still in flight, and,
    for one of them, the survivor's erasure."""
    first_phase: list[EventData] = []
    second_phase: list[EventData] = []
    third_phase: list[EventData] = []
    survivors = rng.sample(people, min(count, len(people)))
    for n, survivor in enumerate(survivors):
        own = [e for e in data.events if e.lead_id == survivor]
        captured = min(e.captured_at for e in own if isinstance(e, LeadCaptured))
        last_move = max(e.changed_at for e in own if isinstance(e, StageChanged))
        other = _uuid(rng)
        back_dated = rng.random() < 0.2
        at = captured + (
            -timedelta(days=2)
            if back_dated
            else timedelta(days=rng.choice((0, 1, 3, 8)), minutes=rng.randrange(1, 600))
        )
        events: list[EventData] = [_capture(rng, other, at), _stage(other, STAGES[0], at, None)]
        other_stage = STAGES[0]
        if rng.random() < 0.5:
            other_stage = STAGES[1]
            events.append(_stage(other, other_stage, at + timedelta(days=1), STAGES[0]))
        events.append(_activity(rng, other, "page_viewed", at + timedelta(hours=2)))
        if rng.random() < 0.4:
            touch = _uuid(rng)
            sent = at + timedelta(hours=5)
            events += [
                TouchSent(
                    lead_id=other,
                    touch_id=touch,
                    playbook="welcome",
                    channel="email",
                    template="t",
                    funnel_id=FUNNEL,
                    stage=STAGES[0],
                    sent_at=sent,
                ),
                TouchOpened(lead_id=other, touch_id=touch, opened_at=sent + timedelta(hours=1)),
            ]
        orders = [e for e in own if isinstance(e, ActivityRecorded) and e.order_id]
        if orders and rng.random() < 0.5:  # the survivor's order reported for the other too
            events.append(
                orders[0].model_copy(update={"lead_id": other, "activity_id": _uuid(rng)})
            )
        elif rng.random() < 0.3:
            order = f"o-{other.hex[:8]}-1"
            events.append(
                _activity(rng, other, "purchase_completed", at + timedelta(days=2), "29.00", order)
            )
        first_phase += events
        merged_at = max(last_move, at + timedelta(days=3)) + timedelta(minutes=rng.randrange(600))
        second_phase.append(
            LeadMerged(
                lead_id=survivor,
                merged_lead_id=other,
                reason=rng.choice(("manual", "same_phone")),
                actor=None,
                merged_at=merged_at,
            )
        )
        survivor_stage = _stage_at(data.events, survivor, merged_at)
        assert survivor_stage is not None
        if STAGES.index(other_stage) > STAGES.index(survivor_stage):
            move = _stage(survivor, other_stage, merged_at, survivor_stage)
            second_phase.append(move.model_copy(update={"reason": "merged"}))
        # In flight when the merge was made: counted for the survivor once they arrive.
        second_phase.append(
            _activity(rng, other, "pricing_viewed", merged_at - timedelta(minutes=1))
        )
        if rng.random() < 0.3:
            order = f"o-{other.hex[:8]}-late"
            when = merged_at - timedelta(minutes=2)
            second_phase.append(_activity(rng, other, "purchase_completed", when, "15.00", order))
        data.merged[other] = survivor
        if n == 0 and count >= 3:  # the person then asked to be forgotten: both leads go
            third_phase.append(
                LeadErased(
                    lead_id=survivor, request_id=_uuid(rng), erased_at=merged_at + timedelta(days=1)
                )
            )
            data.edge["merged_then_erased"] = survivor
    data.events += first_phase
    data.merge_phase = len(data.events)
    data.events += second_phase
    data.erase_phase = len(data.events)
    data.events += third_phase


def _edge_cases(rng: random.Random, data: Dataset) -> None:
    day = START + timedelta(days=10)
    edge = _uuid(rng)  # converts exactly at the 14-day window's edge
    data.events += [
        _capture(rng, edge, day),
        _stage(edge, "awareness", day, None),
        _stage(edge, "interest", day + timedelta(days=14), "awareness"),
    ]
    past = _uuid(rng)  # one microsecond past the edge
    data.events += [
        _capture(rng, past, day),
        _stage(past, "awareness", day, None),
        _stage(past, "interest", day + timedelta(days=14, microseconds=1), "awareness"),
    ]
    before = _uuid(rng)  # enters interest before awareness (an event before the first step)
    data.events += [
        _capture(rng, before, day),
        _stage(before, "interest", day - timedelta(days=1), None),
        _stage(before, "awareness", day, "interest"),
    ]
    twice = _uuid(rng)  # converts to action twice, and orders twice (the first counts)
    data.events += [
        _capture(rng, twice, day),
        _stage(twice, "awareness", day, None),
        _stage(twice, "action", day + timedelta(days=1), "awareness"),
        _stage(twice, "interest", day + timedelta(days=2), "action"),
        _stage(twice, "action", day + timedelta(days=3), "interest"),
        _activity(rng, twice, "purchase_completed", day + timedelta(days=1), "10.00", "t-1"),
        _activity(rng, twice, "purchase_completed", day + timedelta(days=3), "20.00", "t-2"),
        _activity(rng, twice, "purchase_completed", day + timedelta(days=3), "20.00", "t-2"),
    ]
    night = _uuid(rng)  # 00:30 UTC on 2026-09-20: still 2026-09-19 in Los Angeles
    at = datetime(2026, 9, 20, 0, 30, tzinfo=UTC)
    data.events += [_capture(rng, night, at), _stage(night, "awareness", at, None)]
    erased = _uuid(rng)
    data.events += [
        *_journey(rng, erased, day),
        LeadErased(lead_id=erased, request_id=_uuid(rng), erased_at=day + timedelta(days=40)),
    ]
    # Midnight of 21 September in India is 18:30 UTC on the 20th: the lead a microsecond
    # before it is on the 20th there, the lead at it on the 21st.
    india_midnight = datetime(2026, 9, 20, 18, 30, tzinfo=UTC)
    india_20th, india_21st = _uuid(rng), _uuid(rng)
    for lead, at in (
        (india_20th, india_midnight - timedelta(microseconds=1)),
        (india_21st, india_midnight),
    ):
        data.events += [_capture(rng, lead, at), _stage(lead, "awareness", at, None)]
    data.edge.update(
        edge=edge,
        past_edge=past,
        before_first=before,
        twice=twice,
        night=night,
        erased=erased,
        india_20th=india_20th,
        india_21st=india_21st,
    )


# What reporting never opens: a v2 event's sealed personal data (a well-formed stand-in).
_SEALED = {"alg": "A256GCM", "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "c2VhbGVk"}


def as_v2(events: list[EventData]) -> list[EventData]:
    """Half the people (by lead id) captured and updated with v2 events, as lead-intake
    writes them now (personal data sealed, the rest the same); the others keep v1."""
    out: list[EventData] = []
    for e in events:
        if isinstance(e, LeadCaptured) and e.lead_id.int % 2 == 0:
            e = _v2(e)
        elif isinstance(e, LeadUpdated) and e.lead_id.int % 2 == 0:
            e = LeadUpdatedV2(
                lead_id=e.lead_id,
                personal_data=_SEALED,
                has_email=True,
                has_phone=False,
                landing_page=e.landing_page,
                submission_id=e.submission_id,
                form_id=e.form_id,
                funnel_id=e.funnel_id,
                last_touch_utm=e.last_touch_utm,
                updated_at=e.updated_at,
            )
        out.append(e)
    return out


def in_funnel(events: list[EventData], funnel_id: str) -> list[EventData]:
    """The same events in another funnel (a generated history of its own)."""
    return [
        e.model_copy(update={"funnel_id": funnel_id})
        if getattr(e, "funnel_id", None) is not None
        else e
        for e in events
    ]


# Leak histories (decision 0047): daily entry cohorts per first-touch source on two steps,
# for the leak watch's exactness test.
LEAK_STAGES = ("awareness", "interest", "desire")
LEAK_SOURCES = {"google": 22, "facebook": 14, "newsletter": 4}  # entries a day (weekdays)
LEAK_RATES = {("awareness", "interest"): 0.6, ("interest", "desire"): 0.65}
# How long a conversion takes: mostly within the watch's 7-day window, some exactly at its
# edge (counted), a microsecond past it or days later (not counted).
LEAK_DELAYS = (
    timedelta(hours=2),
    timedelta(hours=20),
    timedelta(days=2, minutes=13),
    timedelta(days=6),
    timedelta(days=7),
    timedelta(days=7, microseconds=1),
    timedelta(days=11),
)


@dataclass(frozen=True)
class Drop:
    """The leads of `source` entering from_stage on `since` or later (and before `until`,
    when the step recovers) reach to_stage at `factor` of the usual rate."""

    from_stage: str
    to_stage: str
    source: str
    factor: float
    since: date
    until: date | None = None

    def hits(self, step: tuple[str, str], source: str, entered: date) -> bool:
        return (
            step == (self.from_stage, self.to_stage)
            and source == self.source
            and self.since <= entered
            and (self.until is None or entered < self.until)
        )


def leak_history(
    seed: int,
    first: date,
    last: date,
    drop: Drop | None = None,
    funnel: str = FUNNEL,
    test_share: float = 0.0,
    erased_share: float = 0.0,
) -> list[EventData]:
    """Leads entering `funnel` on every UTC day from `first` to `last` (fewer on weekends),
    from sources of different volume; each step converts at its rate after one of
    LEAK_DELAYS, but for `drop`. Captures are v1 (as_v2 makes half of them v2), but for a
    `test_share` of test leads (v2, `test`); an `erased_share` of the people are erased a
    day after their last move. Test and erased leads convert like the rest, but at the
    dropped step, where they keep the usual rate: counted, they would hide the drop."""
    rng = random.Random(seed)
    events: list[EventData] = []
    day = first
    while day <= last:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        weekend = day.weekday() >= 5
        for source, volume in LEAK_SOURCES.items():
            for _ in range(round(volume * (0.5 if weekend else 1.0) * rng.uniform(0.85, 1.15))):
                lead = _uuid(rng)
                at = midnight + timedelta(microseconds=rng.randrange(24 * 3600 * 10**6))
                capture = _capture(rng, lead, at)
                medium, campaigns = SOURCES.get(source, ("x", ("y",)))
                utm = Utm(source=source, medium=medium, campaign=campaigns[0])
                kind = rng.random()
                test, erased = kind < test_share, test_share <= kind < test_share + erased_share
                captured: EventData = capture.model_copy(update={"utm": utm, "funnel_id": funnel})
                if test:
                    captured = _as_test(
                        capture.model_copy(update={"utm": utm, "funnel_id": funnel})
                    )
                events += [captured, _leak_stage(lead, funnel, LEAK_STAGES[0], at, None)]
                for a, b in itertools.pairwise(LEAK_STAGES):
                    rate = LEAK_RATES[(a, b)]
                    if drop and not (test or erased) and drop.hits((a, b), source, at.date()):
                        rate *= drop.factor
                    if rng.random() >= rate:
                        break
                    at = at + rng.choice(LEAK_DELAYS)
                    events.append(_leak_stage(lead, funnel, b, at, a))
                if erased:
                    erased_at = at + timedelta(days=1)
                    events.append(
                        LeadErased(lead_id=lead, request_id=_uuid(rng), erased_at=erased_at)
                    )
        day += timedelta(days=1)
    return events


def _leak_stage(
    lead: UUID, funnel: str, stage: str, at: datetime, prev: str | None
) -> StageChanged:
    return StageChanged(
        lead_id=lead,
        funnel_id=funnel,
        funnel_version=1,
        from_stage=prev,
        to_stage=stage,
        to_stage_position=LEAK_STAGES.index(stage),
        reason="generated",
        changed_at=at,
    )
