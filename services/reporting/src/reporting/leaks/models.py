"""When a funnel step leaks (pure): a one-sided two-proportion z-test of the step's recent
conversion against its own trailing baseline, with a minimum sample and a false-alarm budget.

Each check looks at entry cohorts that have had the whole conversion window to convert
(`window_days`), so a young lead that has not converted yet is never counted as a loss:

    baseline: the `baseline_days` days before the current ones
    current:  the `current_days` days that ended `window_days` days before today (UTC)

A step (from one stage to the next, of leads entering the first) is tested overall and per
first-touch source. A test needs `min_entered` leads in each of the two periods and at
least `min_expected` conversions expected in the current one at the baseline rate (the
normal approximation holds there). The **false-alarm budget** is the chance, on a funnel
whose rates do not change, of one or more alerts in a quarter (91 daily checks, default
5%): it is
split evenly over every test of every check (Bonferroni), so each test's significance level
is budget / (91 x tests). Checks of the same day see the same cohorts, so checking more
often than daily spends nothing more.

A leak stays open until its step recovers: the current conversion is no longer below the
baseline the leak was opened against with p < `resolve_p` (a laxer level than opening, so
a step near the edge does not flap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

CHECKS_PER_QUARTER = 91


@dataclass(frozen=True)
class Rule:
    window_days: int = 7
    current_days: int = 7
    baseline_days: int = 28
    min_entered: int = 100
    min_expected: int = 10
    false_alarm_budget: float = 0.05
    resolve_p: float = 0.2

    def alpha(self, tests: int) -> float:
        """Each test's significance level when a check runs `tests` tests."""
        return self.false_alarm_budget / (CHECKS_PER_QUARTER * max(tests, 1))

    def periods(self, today: date) -> tuple[tuple[date, date], tuple[date, date]]:
        """(baseline, current): inclusive UTC day ranges of entry cohorts, both matured."""
        current_end = today - timedelta(days=self.window_days + 1)
        current_start = current_end - timedelta(days=self.current_days - 1)
        baseline_end = current_start - timedelta(days=1)
        baseline_start = baseline_end - timedelta(days=self.baseline_days - 1)
        return (baseline_start, baseline_end), (current_start, current_end)

    def delay_days(self) -> int:
        """The stated delay: a step whose conversion falls by half or more, at 100 or more
        entries a day, is alerted within this many days of the first cohort it hit."""
        return self.window_days + 1 + 4


@dataclass(frozen=True)
class Counts:
    entered: int
    converted: int

    @property
    def rate(self) -> float:
        return self.converted / self.entered if self.entered else 0.0


def drop_p_value(baseline: Counts, current: Counts) -> float:
    """One-sided p-value of "the current rate is below the baseline rate": the pooled
    two-proportion z-test with Yates' continuity correction (conservative in the far tail
    where small samples make the normal approximation too eager)."""
    if not baseline.entered or not current.entered:
        return 1.0
    pooled = (baseline.converted + current.converted) / (baseline.entered + current.entered)
    variance = pooled * (1 - pooled) * (1 / baseline.entered + 1 / current.entered)
    if variance <= 0:
        return 1.0
    correction = 0.5 * (1 / baseline.entered + 1 / current.entered)
    z = (baseline.rate - current.rate - correction) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def testable(rule: Rule, baseline: Counts, current: Counts) -> bool:
    return (
        baseline.entered >= rule.min_entered
        and current.entered >= rule.min_entered
        and baseline.rate * current.entered >= rule.min_expected
    )


@dataclass(frozen=True)
class Finding:
    key: tuple[str, str, str]  # (from_stage, to_stage, segment)
    baseline: Counts
    current: Counts
    p_value: float


def leaking(rule: Rule, steps: dict[tuple[str, str, str], tuple[Counts, Counts]]) -> list[Finding]:
    """The steps whose drop is significant at the budget's level, of one check's tests."""
    tested = {k: v for k, v in steps.items() if testable(rule, *v)}
    alpha = rule.alpha(len(tested))
    out = []
    for key, (baseline, current) in sorted(tested.items()):
        p = drop_p_value(baseline, current)
        if p < alpha:
            out.append(Finding(key, baseline, current, p))
    return out


def recovered(rule: Rule, baseline: Counts, current: Counts) -> tuple[bool, float]:
    """Whether an open leak's step has recovered against the baseline it was opened with,
    and the p-value of the drop now (a current period too small to tell keeps it open)."""
    p = drop_p_value(baseline, current)
    if current.entered < rule.min_entered:
        return False, p
    return p >= rule.resolve_p, p
