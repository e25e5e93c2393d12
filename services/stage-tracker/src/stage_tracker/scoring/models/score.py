"""Lead scoring (pure): fit points from answers plus engagement points decaying by half-life.

The score is evaluated as of the newest event time the lead has seen, never the wall clock,
so that a replay computes exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from funnel_contracts.events import Temperature
from stage_tracker.funnels.models.definition import Scoring


@dataclass(frozen=True)
class Contribution:
    """Engagement points one event earned, at its own event time."""

    event_id: str
    at: datetime
    points: float


@dataclass(frozen=True)
class Score:
    fit: float
    engagement: float
    total: float
    temperature: Temperature


def fit_points(scoring: Scoring, answers: Mapping[str, str]) -> float:
    if not answers:
        return 0  # what the sum below gives: no rule's values hold None
    # The rules' values as sets (`fit_lookup`), summed in the rules' order as before.
    return sum(points for key, values, points in scoring.fit_lookup if answers.get(key) in values)


def engagement_points(
    scoring: Scoring, contributions: Iterable[Contribution], as_of: datetime
) -> float:
    if not contributions:
        return 0.0  # what the loop below gives
    half_life = scoring.half_life_days * 86400.0
    total = 0.0
    # A fixed order: float sums must not depend on delivery order.
    for c in sorted(contributions, key=lambda c: (c.at, c.event_id)):
        age = max((as_of - c.at).total_seconds(), 0.0)
        total += c.points * 0.5 ** (age / half_life)
    return total


def temperature(scoring: Scoring, total: float) -> Temperature:
    if total >= scoring.hot_at:
        return "hot"
    if total >= scoring.warm_at:
        return "warm"
    return "cold"


def score(
    scoring: Scoring,
    answers: Mapping[str, str],
    contributions: Iterable[Contribution],
    as_of: datetime,
) -> Score:
    fit = round(fit_points(scoring, answers), 2)
    engagement = round(engagement_points(scoring, contributions, as_of), 2)
    total = round(fit + engagement, 2)
    return Score(fit, engagement, total, temperature(scoring, total))
