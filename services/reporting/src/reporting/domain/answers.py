"""The arithmetic of the answers: rates, drop-off, percentiles from buckets (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reporting.domain.windows import MORE_THAN_90_DAYS

GroupKey = tuple[str | None, str | None]  # (cohort, segment)


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def funnel_steps(stages: Sequence[str], counts: Sequence[int]) -> list[dict[str, Any]]:
    """Each step with its conversion from the previous and the first, and the drop-off."""
    steps = []
    for i, (stage, leads) in enumerate(zip(stages, counts, strict=True)):
        previous = counts[i - 1] if i else leads
        steps.append(
            {
                "stage": stage,
                "leads": leads,
                "conversion_from_previous": rate(leads, previous) if i else None,
                "conversion_from_first": rate(leads, counts[0]) if i else None,
                "drop_off": previous - leads if i else None,
                "drop_off_rate": rate(previous - leads, previous) if i else None,
            }
        )
    return steps


def conversion_groups(
    stages: Sequence[str],
    entered: Mapping[GroupKey, int],
    reached: Mapping[tuple[str | None, str | None, str], int],
) -> list[dict[str, Any]]:
    """One group per (cohort, segment) with its steps; groups ordered by cohort then size."""
    groups: list[dict[str, Any]] = []
    sizes: list[tuple[str, int, str]] = []
    for cohort, segment in entered:
        counts = [entered[(cohort, segment)]]
        counts += [reached.get((cohort, segment, stage), 0) for stage in stages[1:]]
        steps = funnel_steps(stages, counts)
        sizes.append((cohort or "", -counts[0], segment or ""))
        groups.append(
            {
                "cohort": cohort,
                "segment": segment,
                "steps": steps,
                "overall_conversion": rate(counts[-1], counts[0]),
            }
        )
    order = sorted(range(len(groups)), key=lambda i: sizes[i])
    return [groups[i] for i in order]


def percentile_hours(buckets: Mapping[int, int], fraction: float) -> int | None:
    """Upper edge (hours) of the bucket holding the given fraction of stays; None if none,
    or if it lies beyond 90 days."""
    total = sum(buckets.values())
    if total == 0:
        return None
    seen = 0
    for upper in sorted(buckets):
        seen += buckets[upper]
        if seen >= fraction * total:
            return None if upper == MORE_THAN_90_DAYS else upper
    return None  # unreachable: the last bucket brings `seen` to `total`
