"""The default funnels from the domain: ordered stages and the exits beside them (pure)."""

from __future__ import annotations

from dataclasses import dataclass

EXITS = ("lost", "recycled")


@dataclass(frozen=True)
class Funnel:
    id: str
    version: int
    stages: tuple[str, ...]

    @property
    def entry_stage(self) -> str:
        return self.stages[0]

    def position(self, stage: str) -> int:
        return self.stages.index(stage)


DEFAULT_FUNNELS: dict[str, Funnel] = {
    f.id: f
    for f in (
        Funnel("digital-sales", 1, ("awareness", "interest", "desire", "action", "loyalty")),
        Funnel(
            "subscription",
            1,
            (
                "awareness",
                "interest",
                "evaluation",
                "decision",
                "purchase",
                "re-evaluation",
                "repurchase",
            ),
        ),
        Funnel(
            "b2b-sales-cycle",
            1,
            (
                "prospecting",
                "initial-contact",
                "qualification",
                "presentation",
                "objection-handling",
                "closing",
                "follow-up",
            ),
        ),
    )
}


class UnknownFunnel(ValueError):
    """An event names a funnel this tracker does not know."""


def funnel_by_id(funnel_id: str) -> Funnel:
    try:
        return DEFAULT_FUNNELS[funnel_id]
    except KeyError:
        raise UnknownFunnel(f"unknown funnel {funnel_id!r}") from None
