"""The decay key (pure): within a group (fit, half-life, sign), ordering leads by their key is
ordering them by their score now, at every instant; the key ranges never drop a lead whose
score now is in range; the work queue's cursor round-trips."""

from __future__ import annotations

import contextlib
import itertools
import math
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stage_tracker.moves.models.versions import IfMatch, etag
from stage_tracker.queue.models import BadCursor, Cursor, decode_cursor
from stage_tracker.scoring.models.decay import (
    KEY_SLACK,
    current_score,
    decay_key,
    half_life_seconds,
    keys_at_least,
    keys_at_most,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)
WELL_WITHIN_SLACK = KEY_SLACK * math.log(2) / 10  # a relative score error
FITS = st.sampled_from([0.0, 10.0, 20.0, 35.5])
HALF_LIVES = st.sampled_from([half_life_seconds(d) for d in (0.5, 1, 14, 30, 365)])
engagements = st.one_of(
    st.just(0.0),
    st.floats(0.01, 5000, allow_nan=False),
    st.floats(-500, -0.01, allow_nan=False),
)
# Scores are evaluated at or after the newest event time (now >= as_of).
scored_at = st.integers(-400 * 86400, 0).map(lambda s: BASE + timedelta(seconds=s))
instants = st.integers(0, 4000 * 86400).map(lambda s: BASE + timedelta(seconds=s))


@st.composite
def leads(draw: st.DrawFn) -> tuple[float, float, datetime]:
    """(engagement evaluated at as_of, rounded as the scorer stores it, and as_of)."""
    return (round(draw(engagements), 2), 0.0, draw(scored_at))


def formula(fit: float, engagement: float, as_of: datetime, h: float, t: datetime) -> float:
    return fit + engagement * 2 ** (-(t - as_of).total_seconds() / h)


@settings(max_examples=300, deadline=None)
@given(
    fit=FITS,
    h=HALF_LIVES,
    group=st.lists(leads(), min_size=2, max_size=12),
    t1=instants,
    t2=instants,
)
def test_ordering_by_key_within_a_group_is_ordering_by_the_score_now(
    fit: float, h: float, group: list[tuple[float, float, datetime]], t1: datetime, t2: datetime
) -> None:
    for wanted in (1, 0, -1):
        members = [(e, at) for e, _, at in group if (e > 0) - (e < 0) == wanted]
        keyed = [(decay_key(e, at, h), e, at, uuid4()) for e, at in members]
        for t in (t1, t2):
            now = t.timestamp()
            by_key = sorted(keyed, key=lambda x: (x[0].key, x[3]), reverse=True)
            scores = [current_score(fit, k.sign, k.key, h, now) for k, *_ in by_key]
            # The index order (key, id) is the order of the score now (non-increasing) ...
            assert scores == sorted(scores, reverse=True)
            # ... which is the formula's, wherever floats can tell two leads apart.
            exact = [formula(fit, e, at, h, t) for _, e, at, _ in by_key]
            for a, b in itertools.pairwise(exact):
                assert a >= b - 1e-9 * max(1.0, abs(a), abs(b))
            for (_k, e, at, _), got in zip(by_key, scores, strict=True):
                want = formula(fit, e, at, h, t)
                if abs(want - fit) > 1e-250:
                    # Within a tenth of the slack the key ranges allow (KEY_SLACK, in log2
                    # units): float error in the key never lets a range drop a lead.
                    assert got == pytest.approx(want, rel=WELL_WITHIN_SLACK, abs=1e-12)


@settings(max_examples=500, deadline=None)
@given(fit=FITS, h=HALF_LIVES, lead=leads(), t=instants, bound=st.floats(-600, 6000))
def test_key_ranges_keep_every_lead_whose_score_now_is_in_range(
    fit: float, h: float, lead: tuple[float, float, datetime], t: datetime, bound: float
) -> None:
    engagement, _, as_of = lead
    k = decay_key(engagement, as_of, h)
    now = t.timestamp()
    score = current_score(fit, k.sign, k.key, h, now)
    for probe in (bound, score):  # any bound, and the lead's own score (a cursor on it)
        at_most = keys_at_most(probe, fit, k.sign, h, now)
        at_least = keys_at_least(probe, fit, k.sign, h, now)
        if score <= probe:
            assert not at_most.empty
            assert at_most.low <= k.key <= at_most.high
        if score >= probe:
            assert not at_least.empty
            assert at_least.low <= k.key <= at_least.high


def test_a_half_life_halves_the_engagement_and_fit_stays() -> None:
    h = half_life_seconds(14)
    k = decay_key(40.0, BASE, h)
    assert current_score(10, k.sign, k.key, h, BASE.timestamp()) == pytest.approx(50)
    later = (BASE + timedelta(days=14)).timestamp()
    assert current_score(10, k.sign, k.key, h, later) == pytest.approx(30)
    assert decay_key(0.0, BASE, h).key == -math.inf
    none = decay_key(0.0, BASE, h)
    assert current_score(10, none.sign, none.key, h, later) == 10
    negative = decay_key(-8.0, BASE, h)
    assert current_score(10, negative.sign, negative.key, h, later) == pytest.approx(6)
    far = (BASE + timedelta(days=14 * 5000)).timestamp()  # far beyond any float
    assert current_score(10, k.sign, k.key, h, far) == 10


def test_cursors_round_trip_and_refuse_what_they_did_not_make() -> None:
    lead = UUID(int=7)
    for c in (
        Cursor("-score", 1.5e9, lead, score=12.345678901234567, key=-math.inf),
        Cursor("score", 1.5e9, lead, score=-3.0, key=1460.123456789),
        Cursor("-entered_at", 1.5e9, lead, entered_at=BASE),
    ):
        assert decode_cursor(c.encode(), c.sort) == c
    good = Cursor("-score", 1.5e9, lead, score=1.0, key=2.0).encode()
    for bad in ("", "nope", "e30", good[:-3], "eyJvIjoiLXNjb3JlIn0"):
        with pytest.raises(BadCursor):
            decode_cursor(bad, "-score")
    with pytest.raises(BadCursor, match="sort"):
        decode_cursor(good, "entered_at")


def test_if_match_compares_strong_entity_tags() -> None:
    assert IfMatch.parse(None) is None
    assert etag(7) == '"7"'
    assert IfMatch.parse('"7"').matches(7)  # type: ignore[union-attr]
    assert IfMatch.parse('"6", "7"').matches(7)  # type: ignore[union-attr]
    assert IfMatch.parse("*").matches(3)  # type: ignore[union-attr]
    for other in ('"6"', 'W/"7"', "7", ""):
        assert not IfMatch.parse(other).matches(7)  # type: ignore[union-attr]


@given(st.text(max_size=40))
def test_any_text_is_refused_as_a_cursor_or_read(text: str) -> None:
    assume(text)
    with contextlib.suppress(BadCursor):
        decode_cursor(text, "-score")
