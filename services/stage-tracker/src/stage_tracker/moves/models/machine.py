"""The stage state machine (pure): a lead's state and a signal in, the new state and moves out.

Rules of the road, each one tested:
- a lead is in exactly one stage; every move chains from the stage it was in;
- an event already seen changes nothing (a duplicate or a redelivery);
- a late event (older than the lead's entry into its current stage) still counts toward the
  score and moves the lead forward when a rule, judged against the current stage (`from`
  included), says so; never back, never out;
- rules without `from` move forward only (skipping stages is fine); rules with `from` may move
  back (the subscription cycle: repurchase -> re-evaluation each billing period);
- a lost lead that comes back is recycled, then re-enters the line;
- time without activity stalls a lead, and a stalled lead is lost after a further limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from funnel_contracts.events import Temperature
from stage_tracker.funnels.models.definition import (
    LOST,
    RECYCLED,
    STALLED,
    FunnelDefinition,
    Match,
    PropertyValue,
)
from stage_tracker.scoring.models import score as scoring
from stage_tracker.scoring.models.signals import (
    CAPTURED,
    IMPORTED_STAGE,
    PASSIVE_KINDS,
    STAGE_ENTERED_AT,
    Signal,
)

# The journey reason of an imported contact's move into the stage the other tool had them in.
IMPORTED = "imported"


@dataclass(frozen=True)
class Answer:
    value: str
    at: datetime
    event_id: str


@dataclass(frozen=True)
class LeadState:
    funnel_id: str
    funnel_version: int
    stage: str
    stage_entered_at: datetime
    previous_stage: str | None  # the line stage a stalled lead resumes
    answers: Mapping[str, Answer]
    contributions: tuple[scoring.Contribution, ...]
    seen: frozenset[str]
    last_activity_at: datetime
    as_of: datetime  # the newest event time seen: the score is evaluated at it
    score: scoring.Score
    owner: str | None = None  # a key's name: who works the lead (set by people, not events)
    version: int = 0  # the row's version as read (bumped by the store on every change)

    def answer_values(self) -> dict[str, str]:
        return {k: a.value for k, a in self.answers.items()}


@dataclass(frozen=True)
class Move:
    funnel_id: str
    funnel_version: int
    from_stage: str | None
    to_stage: str
    to_position: int
    reason: str
    occurred_at: datetime
    cause_event_id: str | None = None
    cause_event_type: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class ScoreChange:
    score: scoring.Score
    previous_temperature: Temperature | None
    cause_event_id: str | None
    at: datetime

    @property
    def became_hot(self) -> bool:
        return self.score.temperature == "hot" and self.previous_temperature != "hot"


@dataclass(frozen=True)
class Outcome:
    state: LeadState
    moves: tuple[Move, ...] = ()
    scored: ScoreChange | None = None


class NotCaptured(LookupError):
    """A signal for a lead the tracker has not seen captured yet (kept until it is)."""


class UnknownStage(LookupError):
    """A lead's stage is not in its funnel version (an event or request names a bad stage)."""


class Refused(Exception):
    """A manual move the lead's funnel does not allow from where the lead is, with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedMove(Refused):
    """A move wrong whatever the lead's state: a stage its funnel does not have, or a manual
    move without a stage, a reason or an actor."""


_STATE_FIELDS = frozenset(f.name for f in fields(LeadState))


def evolve(state: LeadState, **changes: Any) -> LeadState:
    """`dataclasses.replace(state, **changes)` at a quarter of its cost: the machine makes
    a new state or two per event, and a frozen dataclass's __init__ goes through
    object.__setattr__ field by field. LeadState has no __post_init__, no slots and no
    field outside __init__, so copying its fields is what __init__ would have done;
    `tests/test_tracker_machine_properties.py` holds the two equal."""
    if not changes.keys() <= _STATE_FIELDS:
        raise TypeError(f"LeadState has no field {sorted(changes.keys() - _STATE_FIELDS)}")
    new = object.__new__(LeadState)
    attributes = new.__dict__
    attributes.update(state.__dict__)
    attributes.update(changes)
    return new


# ---------------------------------------------------------------- entry and signals


def capture(funnel: FunnelDefinition, signal: Signal, pending: Sequence[Signal] = ()) -> Outcome:
    """A captured lead enters the first stage; signals that arrived before it are folded in."""
    if signal.kind != CAPTURED:
        raise NotCaptured(signal.kind)
    entry = Move(
        funnel.id,
        funnel.version,
        None,
        funnel.entry_stage,
        0,
        "captured",
        signal.occurred_at,
        signal.event_id,
        signal.event_type,
    )
    empty = scoring.score(funnel.scoring, {}, (), signal.occurred_at)
    state = LeadState(
        funnel.id,
        funnel.version,
        funnel.entry_stage,
        signal.occurred_at,
        None,
        {},
        (),
        frozenset(),
        signal.occurred_at,
        signal.occurred_at,
        empty,
    )
    moves: tuple[Move, ...] = (entry,)
    imported = _imported_move(funnel, signal)
    if imported is not None:
        state = _moved(state, imported, funnel)
        moves = (entry, imported)
    outcome = _fold(state, funnel, [signal, *sorted(pending, key=_event_order)])
    return replace(outcome, moves=(*moves, *outcome.moves))


def _imported_move(funnel: FunnelDefinition, signal: Signal) -> Move | None:
    """An imported contact's stage, as the other tool had it: a move from the entry stage,
    dated when they entered it (reason `imported`). A stage not in the line of this funnel
    (or the entry stage itself) moves nothing: the contact starts at the entry stage."""
    stage = signal.properties.get(IMPORTED_STAGE)
    if not isinstance(stage, str) or stage == funnel.entry_stage:
        return None
    if not funnel.has_stage(stage) or not funnel.in_line(stage):
        return None
    raw = signal.properties.get(STAGE_ENTERED_AT)
    entered = datetime.fromisoformat(raw) if isinstance(raw, str) else signal.occurred_at
    return Move(
        funnel.id,
        funnel.version,
        funnel.entry_stage,
        stage,
        funnel.position(stage),
        IMPORTED,
        max(entered, signal.occurred_at),
        signal.event_id,
        signal.event_type,
    )


def _event_order(s: Signal) -> tuple[datetime, str]:
    return (s.occurred_at, s.event_id)


def _fold(state: LeadState, funnel: FunnelDefinition, signals: Sequence[Signal]) -> Outcome:
    moves: list[Move] = []
    before = state.score
    last_cause: str | None = None
    for s in signals:
        outcome = apply(state, funnel, s)
        state = outcome.state
        moves += outcome.moves
        if outcome.scored is not None:
            last_cause = s.event_id
    return Outcome(state, tuple(moves), _score_change(before, state, last_cause))


def _score_change(before: scoring.Score, state: LeadState, cause: str | None) -> ScoreChange | None:
    after = state.score
    if (after.total, after.temperature) == (before.total, before.temperature):
        return None
    return ScoreChange(after, before.temperature, cause, state.as_of)


def apply(state: LeadState, funnel: FunnelDefinition, signal: Signal) -> Outcome:
    """The outcome of one signal for a lead already in its funnel."""
    if signal.event_id in state.seen:
        return Outcome(state)
    if not funnel.has_stage(state.stage):
        raise UnknownStage(f"stage {state.stage!r} is not in {funnel.id} v{funnel.version}")
    recorded, answers = _record(state, funnel, signal)
    moves = _moves(recorded, funnel, signal, answers)
    after = recorded
    for move in moves:
        after = _moved(after, move, funnel)
    return Outcome(after, tuple(moves), _score_change(state.score, after, signal.event_id))


def _record(
    state: LeadState, funnel: FunnelDefinition, signal: Signal
) -> tuple[LeadState, dict[str, str]]:
    """The state with the signal recorded and scored, and its answers' values."""
    answers = state.answers
    if signal.answers:  # most signals bring none: the state's answers are kept as they are
        answers = dict(answers)
        for key, value in signal.answers.items():
            old = answers.get(key)
            if old is None or (old.at, old.event_id) <= (signal.occurred_at, signal.event_id):
                answers[key] = Answer(value, signal.occurred_at, signal.event_id)
    contributions = state.contributions
    points = funnel.scoring.engagement.get(signal.kind, 0.0)
    if points:
        contributions = (
            *contributions,
            scoring.Contribution(signal.event_id, signal.occurred_at, points),
        )
    as_of = max(state.as_of, signal.occurred_at)
    last_activity = state.last_activity_at
    if signal.kind not in PASSIVE_KINDS:
        last_activity = max(last_activity, signal.occurred_at)
    # One new state, scored at once (rescored() on a copy would build it twice).
    values = {k: a.value for k, a in answers.items()}
    recorded = evolve(
        state,
        answers=answers,
        contributions=contributions,
        seen=state.seen | {signal.event_id},
        as_of=as_of,
        last_activity_at=last_activity,
        score=scoring.score(funnel.scoring, values, contributions, as_of),
    )
    return recorded, values


def rescored(state: LeadState, funnel: FunnelDefinition, as_of: datetime) -> LeadState:
    values = state.answer_values()
    new = scoring.score(funnel.scoring, values, state.contributions, as_of)
    return evolve(state, score=new, as_of=as_of)


def _moved(state: LeadState, move: Move, funnel: FunnelDefinition) -> LeadState:
    previous = state.stage if move.to_stage == STALLED else state.previous_stage
    return evolve(
        state,
        stage=move.to_stage,
        stage_entered_at=move.occurred_at,
        previous_stage=previous,
        funnel_version=move.funnel_version,
    )


def _move(
    state: LeadState, funnel: FunnelDefinition, to: str, reason: str, signal: Signal, frm: str
) -> Move:
    return Move(
        funnel.id,
        funnel.version,
        frm,
        to,
        funnel.position(to),
        reason,
        # A late event's move happens after the stage it leaves was entered, not at the late
        # event's own time: the history stays in time order, which is the order every reader
        # of stage events (reporting) rebuilds it in.
        max(signal.occurred_at, state.stage_entered_at),
        signal.event_id,
        signal.event_type,
    )


def _moves(
    state: LeadState, funnel: FunnelDefinition, signal: Signal, answers: Mapping[str, str]
) -> list[Move]:
    """The moves a recorded signal makes (`answers`: the state's answers' values)."""
    late = signal.occurred_at < state.stage_entered_at
    returning = not late and signal.kind not in PASSIVE_KINDS
    lost_reason = None if late else _lost_reason(funnel, signal, state)
    if state.stage == LOST:
        if not returning or lost_reason is not None:
            return []
        back = _move(state, funnel, RECYCLED, "returned", signal, LOST)
        entry = evolve(state, stage=funnel.entry_stage)
        target = _target(entry, funnel, signal, answers, late=False)
        to, why = target or (funnel.entry_stage, "re-entered")
        return [back, _move(state, funnel, to, why, signal, RECYCLED)]
    if state.stage in (STALLED, RECYCLED):
        if lost_reason is not None:
            return [_move(state, funnel, LOST, lost_reason, signal, state.stage)]
        if not returning:
            return []
        resume = state.previous_stage or funnel.entry_stage
        target = _target(evolve(state, stage=resume), funnel, signal, answers, late=False)
        to, why = target or (resume, "resumed")
        return [_move(state, funnel, to, why, signal, state.stage)]
    if lost_reason is not None:
        return [_move(state, funnel, LOST, lost_reason, signal, state.stage)]
    target = _target(state, funnel, signal, answers, late=late)
    if target is None:
        return []
    return [_move(state, funnel, target[0], target[1], signal, state.stage)]


def _target(
    state: LeadState,
    funnel: FunnelDefinition,
    signal: Signal,
    answers: Mapping[str, str],
    *,
    late: bool,
) -> tuple[str, str] | None:
    """The stage a signal's rules lead to: the furthest forward one, else a permitted step back
    (`answers`: the state's answers' values)."""
    current = funnel.position(state.stage)
    forward: list[tuple[int, Match]] = []
    backward: list[tuple[int, Match]] = []
    # Only the rules this kind of signal can satisfy: within a stage, the first that matches
    # is the same as among all of them.
    for pos, stage, rules in funnel.entry_rules_for(signal.kind):
        if stage.name == state.stage:
            continue
        for rule in rules:
            if rule.from_stages is not None and state.stage not in rule.from_stages:
                continue
            if not _matches(rule.match, signal, state, answers):
                continue
            if pos > current:
                # A late event's guarded rule counts too: after a backlog a click from one
                # topic may have moved the lead before the older pricing visit from another
                # was read; judged against the stage the lead is in now, it moves it on.
                forward.append((pos, rule.match))
            elif rule.from_stages is not None and not late:
                # Never back by a late event: it did not happen in the stage the lead is in.
                backward.append((pos, rule.match))
            break
    found = forward or backward
    if not found:
        return None
    # The furthest stage, and among rules there (one per stage) the greatest description: what
    # max() of (position, description) pairs gives, with only the chosen rules described.
    pos = max(p for p, _ in found)
    return funnel.stages[pos].name, max(describe(m) for p, m in found if p == pos)


def _lost_reason(funnel: FunnelDefinition, signal: Signal, state: LeadState) -> str | None:
    for rule in funnel.lost_rules_for(signal.kind):
        # Answers that disqualify count only when this very signal brings them: a lead that
        # came back after being lost is not thrown out again for an old answer.
        if _matches(rule.match, signal, state, signal.answers):
            return rule.reason
    return None


def _same(a: PropertyValue, b: PropertyValue) -> bool:
    return a == b or str(a).lower() == str(b).lower()


def _matches(match: Match, signal: Signal, state: LeadState, answers: Mapping[str, str]) -> bool:
    # Each condition looked at only when the rule sets it (most set one or two): no generator
    # made per rule and signal for an empty one.
    if match.event is not None and signal.kind != match.event:
        return False
    where = match.where
    if where and any(not _same(signal.properties.get(k), v) for k, v in where.items()):
        return False
    if match.score_at_least is not None and state.score.total < match.score_at_least:
        return False
    wanted = match.answers
    if wanted and any(answers.get(k) not in values for k, values in wanted.items()):
        return False
    answered = match.answered
    return not answered or all(q in answers for q in answered)


def describe(match: Match) -> str:
    """A rule in words, for the journey: why did this lead move?"""
    parts = []
    if match.event is not None:
        where = ", ".join(f"{k}={v}" for k, v in match.where.items())
        parts.append(f"{match.event} ({where})" if where else match.event)
    elif match.where:
        parts.append(", ".join(f"{k}={v}" for k, v in match.where.items()))
    if match.score_at_least is not None:
        parts.append(f"score >= {match.score_at_least:g}")
    for k, values in match.answers.items():
        parts.append(f"{k} in {'/'.join(values)}")
    if match.answered:
        parts.append(f"answered {', '.join(match.answered)}")
    return "; ".join(parts)


# ---------------------------------------------------------------- time


def timer_due(state: LeadState, funnel: FunnelDefinition) -> datetime | None:
    """When the lead stalls (in the line) or is lost (stalled), if its funnel sets a limit."""
    if funnel.in_line(state.stage):
        days = funnel.stage(state.stage).stall_after_days
        if days is not None:
            return max(state.last_activity_at, state.stage_entered_at) + timedelta(days=days)
    elif state.stage == STALLED and funnel.lost_after_stalled_days is not None:
        return state.stage_entered_at + timedelta(days=funnel.lost_after_stalled_days)
    return None


def on_timer(
    state: LeadState,
    funnel: FunnelDefinition,
    now: datetime,
    *,
    cause_event_id: str | None = None,
    cause_event_type: str | None = None,
) -> Outcome:
    """Stall or lose a lead whose limit has passed; the move is dated at the limit itself."""
    due = timer_due(state, funnel)
    if due is None or due > now:
        return Outcome(state)
    if funnel.in_line(state.stage):
        days = funnel.stage(state.stage).stall_after_days
        to, reason = STALLED, f"no activity for {days:g} days"
    else:
        to, reason = LOST, f"stalled for {funnel.lost_after_stalled_days:g} days"
    move = Move(
        funnel.id,
        funnel.version,
        state.stage,
        to,
        funnel.position(to),
        reason,
        due,
        cause_event_id,
        cause_event_type,
    )
    after = _moved(rescored(state, funnel, max(state.as_of, due)), move, funnel)
    return Outcome(after, (move,), _score_change(state.score, after, None))


# ---------------------------------------------------------------- people


def manual_move(
    state: LeadState,
    funnel: FunnelDefinition,
    to_stage: str,
    *,
    reason: str,
    actor: str,
    at: datetime,
    target_funnel: FunnelDefinition | None = None,
    cause_event_id: str | None = None,
    cause_event_type: str | None = None,
) -> Outcome:
    """A move by a person; Refused with the reason when the funnel does not allow it."""
    target = target_funnel or funnel
    if target.id != state.funnel_id:
        raise Refused(f"the lead is in funnel {state.funnel_id}, not {target.id}")
    if not target.has_stage(to_stage):
        raise MalformedMove(f"no stage {to_stage!r} in {target.id} v{target.version}")
    if target.version < state.funnel_version:
        raise Refused(f"the lead is on v{state.funnel_version}; it never moves back a version")
    if to_stage == RECYCLED:
        raise Refused("recycled is entered only by a lost lead that comes back")
    if to_stage == STALLED:
        raise Refused("stalled is set by the stall timer, not by hand")
    if to_stage == state.stage and target.version == state.funnel_version:
        raise Refused(f"the lead is already in {to_stage}")
    if (
        target.in_line(to_stage)
        and funnel.in_line(state.stage)
        and target.position(to_stage) < funnel.position(state.stage)
        and not target.manual_backward
    ):
        raise Refused(
            f"{target.id} v{target.version} does not allow moving back by hand "
            f"({state.stage} -> {to_stage})",
        )
    when = max(at, state.stage_entered_at)
    move = Move(
        target.id,
        target.version,
        state.stage,
        to_stage,
        target.position(to_stage),
        reason,
        when,
        cause_event_id,
        cause_event_type,
        actor,
    )
    after = replace(_moved(state, move, target), last_activity_at=max(state.last_activity_at, when))
    after = rescored(after, target, after.as_of)
    return Outcome(after, (move,), _score_change(state.score, after, None))


# ---------------------------------------------------------------- merges

MERGED = "merged"


def merged(
    survivor: LeadState,
    other: LeadState,
    funnel: FunnelDefinition,
    at: datetime,
    *,
    cause_event_id: str,
    cause_event_type: str,
) -> Outcome:
    """Two leads are one person: the survivor takes the other's answers, score contributions
    and activity, and the further stage of the two (a move with reason `merged`, when the
    other's is further along the same funnel's line); both histories are kept."""
    if cause_event_id in survivor.seen:
        return Outcome(survivor)
    answers = dict(other.answers)
    for key, answer in survivor.answers.items():
        old = answers.get(key)
        if old is None or (old.at, old.event_id) <= (answer.at, answer.event_id):
            answers[key] = answer
    known = {c.event_id for c in survivor.contributions}
    folded = replace(
        survivor,
        answers=answers,
        contributions=(
            *survivor.contributions,
            *(c for c in other.contributions if c.event_id not in known),
        ),
        seen=survivor.seen | other.seen | {cause_event_id},
        last_activity_at=max(survivor.last_activity_at, other.last_activity_at),
    )
    folded = rescored(folded, funnel, max(folded.as_of, other.as_of))
    moves: tuple[Move, ...] = ()
    further = (
        other.funnel_id == survivor.funnel_id
        and funnel.in_line(other.stage)
        and funnel.in_line(survivor.stage)
        and funnel.position(other.stage) > funnel.position(survivor.stage)
    )
    if further:
        move = Move(
            funnel.id,
            funnel.version,
            survivor.stage,
            other.stage,
            funnel.position(other.stage),
            MERGED,
            max(at, survivor.stage_entered_at),
            cause_event_id,
            cause_event_type,
        )
        folded = _moved(folded, move, funnel)
        moves = (move,)
    return Outcome(folded, moves, _score_change(survivor.score, folded, cause_event_id))
