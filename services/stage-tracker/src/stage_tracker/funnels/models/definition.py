"""A funnel definition, typed and validated (pure): stages in order, exits, rules, scoring.

The text people write (YAML or JSON) becomes one of these in `funnels.models.parsing`; the state
machine and the scorer only ever see this form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

PropertyValue = str | int | float | bool | None

STALLED = "stalled"
LOST = "lost"
RECYCLED = "recycled"
# Exits are not stages in the line; they sit after it (positions n, n+1, n+2).
EXITS = (STALLED, LOST, RECYCLED)


@dataclass(frozen=True)
class Match:
    """Conditions that all have to hold (a rule with no condition is refused at validation)."""

    event: str | None = None  # a signal kind: an activity type, touch_clicked, unsubscribed...
    where: Mapping[str, PropertyValue] = field(default_factory=dict)
    score_at_least: float | None = None
    answers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # lower-case values
    answered: tuple[str, ...] = ()  # these qualification questions have an answer


@dataclass(frozen=True)
class EntryRule:
    """Enter the stage when `match` holds; `from_stages` None means from any earlier stage."""

    match: Match
    from_stages: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LostRule:
    """Leave the line as lost, with `reason`, when `match` holds."""

    match: Match
    reason: str


@dataclass(frozen=True)
class Stage:
    """A stage of the line: entered by its rules; a lead left in it `stall_after_days`
    without activity stalls (None: never)."""

    name: str
    enter_when: tuple[EntryRule, ...] = ()
    stall_after_days: float | None = None


@dataclass(frozen=True)
class FitRule:
    """`points` of fit for a lead whose answer to `answer` is one of `values`."""

    answer: str
    values: tuple[str, ...]
    points: float


@dataclass(frozen=True)
class Scoring:
    half_life_days: float = 14.0
    fit: tuple[FitRule, ...] = ()
    engagement: Mapping[str, float] = field(default_factory=dict)
    warm_at: float = 20.0
    hot_at: float = 50.0

    @cached_property
    def fit_lookup(self) -> tuple[tuple[str, frozenset[str], float], ...]:
        """The fit rules as (answer, its values as a set, points), in their order: what the
        scorer reads for every signal, worked out once."""
        return tuple((r.answer, frozenset(r.values), r.points) for r in self.fit)


@dataclass(frozen=True)
class FunnelDefinition:
    id: str
    version: int
    name: str
    stages: tuple[Stage, ...]
    lost_when: tuple[LostRule, ...] = ()
    lost_after_stalled_days: float | None = None
    scoring: Scoring = field(default_factory=Scoring)
    manual_backward: bool = True

    # Worked out once per definition (the machine asks for every event); not fields, so
    # equality and hashing stay those of the definition.
    @cached_property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Line stages count from 0; the exits follow the line."""
        names = self.stage_names
        line = {name: i for i, name in reversed(list(enumerate(names)))}
        exits = {name: len(names) + i for i, name in enumerate(EXITS) if name not in line}
        return {**exits, **line}

    @property
    def entry_stage(self) -> str:
        return self.stages[0].name

    def has_stage(self, name: str) -> bool:
        return name in self._positions

    def position(self, stage: str) -> int:
        """Line stages count from 0; the exits follow the line."""
        try:
            return self._positions[stage]
        except KeyError:
            raise ValueError(f"{stage!r} is not in tuple") from None

    def in_line(self, stage: str) -> bool:
        return stage in self.stage_names

    def stage(self, name: str) -> Stage:
        return self.stages[self.stage_names.index(name)]

    @cached_property
    def _by_kind(self) -> dict[str, tuple[tuple[EntryRuleSet, ...], tuple[LostRule, ...]]]:
        return {}

    def _rules_for(self, kind: str) -> tuple[tuple[EntryRuleSet, ...], tuple[LostRule, ...]]:
        cached = self._by_kind.get(kind)
        if cached is None:
            entry = tuple(
                (pos, stage, rules)
                for pos, stage in enumerate(self.stages)
                if (rules := tuple(r for r in stage.enter_when if _may_match(r.match, kind)))
            )
            lost = tuple(r for r in self.lost_when if _may_match(r.match, kind))
            cached = self._by_kind[kind] = (entry, lost)
        return cached

    def entry_rules_for(self, kind: str) -> tuple[EntryRuleSet, ...]:
        """(position, stage, its entry rules) for the rules a signal of `kind` can satisfy
        (their event is `kind` or unset), in the definition's order; stages with none are
        left out. Worked out once per kind (the machine asks for every event)."""
        return self._rules_for(kind)[0]

    def lost_rules_for(self, kind: str) -> tuple[LostRule, ...]:
        """The lost rules a signal of `kind` can satisfy, in order (as `entry_rules_for`)."""
        return self._rules_for(kind)[1]


# A stage's position, the stage and those of its entry rules a signal kind can satisfy.
EntryRuleSet = tuple[int, Stage, tuple[EntryRule, ...]]


def _may_match(match: Match, kind: str) -> bool:
    return match.event is None or match.event == kind


class UnknownFunnel(LookupError):
    """An event or request names a funnel (or a version of it) this tracker does not know."""


@dataclass(frozen=True)
class PublishedVersions:
    """Which versions of each funnel were published when (None: built in)."""

    versions: Mapping[str, Sequence[tuple[int, datetime | None]]]

    def entered_at(self, funnel_id: str, at: datetime) -> int:
        """The version a lead captured at `at` enters: the newest one published by then.

        `at` is the capture's CloudEvents time, so the live consumer and a rebuild pick the
        same version however late they process it. A capture older than the funnel's first
        version enters that one.
        """
        versions = self.versions.get(funnel_id)
        if not versions:
            raise UnknownFunnel(f"unknown funnel {funnel_id!r}")
        by_then = [v for v, when in versions if when is None or when <= at]
        return max(by_then) if by_then else min(v for v, _ in versions)

    def latest(self, funnel_id: str) -> int:
        """The funnel's newest published version (UnknownFunnel when it has none)."""
        versions = self.versions.get(funnel_id)
        if not versions:
            raise UnknownFunnel(f"unknown funnel {funnel_id!r}")
        return max(v for v, _ in versions)
