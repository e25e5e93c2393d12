"""The consumer's fast form of its outgoing events is the contract models' form, byte for byte.

`outcome_event_values` writes stage.changed and lead.scored record values straight from the
machine's outcome; each must equal what the models (`outcome_events`, `model_dump(mode="json")`,
the contracts' encoder) give, for every field and every kind of value; where it cannot vouch
for a value it says so (None).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracker_signals import at, captured, sig

from funnel_contracts import Envelope, LeadScored, StageChanged, encode
from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.moves.models.events import outcome_event_values, outcome_events
from stage_tracker.moves.models.machine import Move, Outcome, ScoreChange, apply, capture
from stage_tracker.scoring.models.score import Score

DS = default_funnels()["digital-sales"]


def _bytes(event_type: str, data: dict[str, object]) -> bytes:
    envelope = Envelope(type=event_type, source="t", subject=str(data["lead_id"]), data=data)
    return encode(envelope).value


def _both(outcome: Outcome) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    lead = uuid4()
    models = [
        (e.event_type, _bytes(e.event_type, e.model_dump(mode="json")))
        for e in outcome_events(lead, outcome)
    ]
    fast = outcome_event_values(str(lead), outcome)
    assert fast is not None
    return models, fast


def _outcomes() -> list[Outcome]:
    first = capture(DS, captured(funnel_id=DS.id, company_size="51-200"))
    outcomes = [first]
    state = first.state
    for s in (sig("page_view", 0.1), sig("pricing_viewed", 0.2), sig("purchase_completed", 0.3)):
        outcome = apply(state, DS, s)
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


def test_the_machine_s_outcomes_encode_to_the_models_bytes() -> None:
    outcomes = _outcomes()
    assert sum(len(o.moves) for o in outcomes) >= 3
    assert any(o.scored is not None for o in outcomes)
    for outcome in outcomes:
        models, fast = _both(outcome)
        assert fast == models


MOVE = Move(
    "digital-sales", 1, "awareness", "interest", 1, "page_view", at(1), "e1",
    "funnel.activity.recorded.v1",
)  # fmt: skip


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 1, 9, 0, 0, 1000, tzinfo=UTC),
        datetime(2026, 11, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 11, 1, 9, 0, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ],
)
@pytest.mark.parametrize("owner", [None, "alice", 'zoë "q" \\ ü'])
def test_every_value_kind_encodes_alike(when: datetime, owner: str | None) -> None:
    state = replace(_outcomes()[-1].state, owner=owner)
    moves = (
        replace(MOVE, occurred_at=when),
        replace(MOVE, from_stage=None, cause_event_id=None, cause_event_type=None, actor="bob"),
    )
    for fit, engagement, total in [(0, 0, 0), (12.5, 3.25, 15.75), (10, 0.1, 10.1)]:
        score = Score(fit, engagement, total, "warm")  # ints too: the model makes them floats
        for previous in (None, "cold", "hot"):
            scored = ScoreChange(score, previous, None, when)  # type: ignore[arg-type]
            models, fast = _both(Outcome(state, moves, scored))
            assert fast == models
            assert [t for t, _ in fast] == [StageChanged.event_type] * 2 + [LeadScored.event_type]


def test_every_field_of_the_contracts_is_written() -> None:
    """A field added to a contract must be added to its template: until then this fails."""
    scored_change = ScoreChange(Score(1, 2, 3, "cold"), None, "e", at(1))
    values = outcome_event_values(
        str(uuid4()), Outcome(_outcomes()[-1].state, (MOVE,), scored_change)
    )
    assert values is not None
    [(_, changed), (_, scored)] = values
    assert list(json.loads(changed)) == list(StageChanged.model_fields)
    assert list(json.loads(scored)) == list(LeadScored.model_fields)


def _bad_cases() -> list[Outcome]:
    """Values the model would refuse or write otherwise: the models decide."""
    state = _outcomes()[0].state
    odd_offset = timezone(timedelta(seconds=30))

    def scored(score: Score) -> Outcome:
        return Outcome(state, (), ScoreChange(score, None, None, at(1)))

    return [
        Outcome(state, (replace(MOVE, funnel_version=0),)),
        Outcome(state, (replace(MOVE, to_position=-1),)),
        Outcome(state, (replace(MOVE, occurred_at=datetime(2026, 1, 1)),)),
        Outcome(state, (replace(MOVE, occurred_at=datetime(2026, 1, 1, tzinfo=odd_offset)),)),
        scored(Score(1, float("inf"), 3, "cold")),
        scored(Score(1, 2, 3, "tepid")),  # type: ignore[arg-type]
        Outcome(state, (replace(MOVE, funnel_version=True),)),  # a bool is not an int here
        Outcome(state, (replace(MOVE, to_stage=None),)),  # type: ignore[arg-type]
        scored(Score(1, 10**400, 3, "cold")),  # no float holds it
        scored(Score(1, "2", 3, "cold")),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("outcome", _bad_cases())
def test_what_it_cannot_vouch_for_goes_to_the_models(outcome: Outcome) -> None:
    assert outcome_event_values(str(uuid4()), outcome) is None


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_NUMBER = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=45)), timezone(-timedelta(hours=3))]
)


@settings(max_examples=300, deadline=None)
@given(
    names=st.tuples(_TEXT, _TEXT, _TEXT, _TEXT),
    optional=st.tuples(*(st.none() | _TEXT for _ in range(5))),
    numbers=st.tuples(_NUMBER, _NUMBER, _NUMBER),
    version=st.integers(1, 2**40),
    position=st.integers(0, 2**40),
    when=st.datetimes(timezones=_ZONES),
    temperatures=st.tuples(
        st.sampled_from(["cold", "warm", "hot"]), st.sampled_from([None, "cold", "warm", "hot"])
    ),
)
def test_any_values_encode_to_the_models_bytes(
    names: tuple[str, str, str, str],
    optional: tuple[str | None, ...],
    numbers: tuple[float, float, float],
    version: int,
    position: int,
    when: datetime,
    temperatures: tuple[str, str | None],
) -> None:
    """Strings with quotes, escapes and any Unicode, numbers of every kind, any offset: the
    templates' bytes are the contract models' bytes, field for field."""
    funnel_id, to_stage, reason, cause_type = names
    owner, actor, cause_id, from_stage, score_cause = optional
    state = replace(_outcomes()[-1].state, funnel_id=funnel_id, owner=owner)
    move = Move(
        funnel_id, version, from_stage, to_stage, position, reason, when, cause_id, cause_type,
        actor,
    )  # fmt: skip
    fit, engagement, total = numbers
    score = Score(fit, engagement, total, temperatures[0])  # type: ignore[arg-type]
    scored = ScoreChange(score, temperatures[1], score_cause, when)  # type: ignore[arg-type]
    outcome = Outcome(state, (move,), scored)
    if outcome_event_values(str(uuid4()), outcome) is None:
        return  # an offset with seconds: the models decide (tested above)
    models, fast = _both(outcome)
    assert fast == models
