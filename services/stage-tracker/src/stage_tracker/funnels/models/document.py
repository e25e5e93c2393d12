"""The shape of a funnel definition document (YAML or JSON), as strict pydantic models.

Unknown keys are refused (a typo such as `stal_after_days` must not be silently ignored).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[a-z][a-z0-9_-]{0,62}$"
KIND = r"^[a-z][a-z0-9_.-]{0,63}$"

Scalar = str | int | float | bool | None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MatchDoc(Strict):
    event: str | None = Field(default=None, pattern=KIND)
    where: dict[str, Scalar] = Field(default_factory=dict)
    score_at_least: float | None = None
    answers: dict[str, list[str]] = Field(default_factory=dict)
    answered: list[str] = Field(default_factory=list)


class EntryRuleDoc(MatchDoc):
    from_: list[str] | None = Field(default=None, alias="from")


class LostRuleDoc(MatchDoc):
    reason: str = Field(pattern=NAME)


class StageDoc(Strict):
    name: str = Field(pattern=NAME)
    enter_when: list[EntryRuleDoc] = Field(default_factory=list)
    stall_after_days: float | None = Field(default=None, gt=0)


class LostDoc(Strict):
    when: list[LostRuleDoc] = Field(default_factory=list)
    after_stalled_days: float | None = Field(default=None, gt=0)


class ExitsDoc(Strict):
    lost: LostDoc = Field(default_factory=LostDoc)


class FitRuleDoc(Strict):
    answer: str = Field(pattern=NAME)
    values: list[str] = Field(min_length=1)
    points: float


class TemperatureDoc(Strict):
    warm: float
    hot: float


class ScoringDoc(Strict):
    half_life_days: float = Field(default=14.0, gt=0)
    fit: list[FitRuleDoc] = Field(default_factory=list)
    engagement: dict[str, float] = Field(default_factory=dict)
    temperature: TemperatureDoc = Field(default_factory=lambda: TemperatureDoc(warm=20, hot=50))


class ManualDoc(Strict):
    allow_backward: bool = True


class FunnelDoc(Strict):
    id: str = Field(pattern=NAME)
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    stages: list[StageDoc] = Field(min_length=1, max_length=50)
    exits: ExitsDoc = Field(default_factory=ExitsDoc)
    scoring: ScoringDoc = Field(default_factory=ScoringDoc)
    manual_moves: ManualDoc = Field(default_factory=ManualDoc)
