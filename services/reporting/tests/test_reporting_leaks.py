"""The leak detector on generated histories: a stable funnel raises nothing over simulated
quarters, a real drop is alerted within the stated delay and resolved after it recovers."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporting.leaks.models import Counts, Rule, drop_p_value, leaking, recovered

STEPS = (("visit", "signup"), ("signup", "trial"), ("trial", "paid"))
SOURCES = {"google": 120, "facebook": 80, "newsletter": 40, "partner": 25}  # entries a day
RATES = {("visit", "signup"): 0.35, ("signup", "trial"): 0.5, ("trial", "paid"): 0.3}
START = date(2026, 1, 1)
Day = dict[tuple[str, str, str], Counts]  # (from, to, source) -> the day's cohort


def _history(
    rng: random.Random, days: int, rate_of: dict[tuple[str, str, str, int], float] | None = None
) -> list[Day]:
    """Daily entry cohorts per step and source, each lead converting with the step's rate
    (a weekday rhythm in the volumes); `rate_of` overrides the rate of (from, to, source, day)."""
    out: list[Day] = []
    for d in range(days):
        weekday = (START + timedelta(days=d)).weekday()
        day: Day = {}
        for (a, b), base_rate in RATES.items():
            for source, volume in SOURCES.items():
                n = max(0, round(volume * (0.6 if weekday >= 5 else 1.1) * rng.uniform(0.8, 1.2)))
                p = (rate_of or {}).get((a, b, source, d), base_rate)
                converted = sum(1 for _ in range(n) if rng.random() < p)
                day[(a, b, source)] = Counts(n, converted)
        out.append(day)
    return out


Totals = dict[tuple[str, str, str], list[tuple[int, int]]]


def _prefix(history: list[Day]) -> Totals:
    """Running totals per (from, to, segment): overall ("all") and per source."""
    out: Totals = {}
    for i, day in enumerate(history):
        for (a, b, source), c in day.items():
            for segment in ("all", f"source:{source}"):
                sums = out.setdefault((a, b, segment), [(0, 0)] * (len(history) + 1))
                n, k = sums[i + 1]
                sums[i + 1] = (n + c.entered, k + c.converted)
    for sums in out.values():
        for i in range(1, len(sums)):
            sums[i] = (sums[i][0] + sums[i - 1][0], sums[i][1] + sums[i - 1][1])
    return out


def _sum(totals: Totals, first: int, last: int) -> dict[tuple[str, str, str], Counts]:
    """The step counts of the cohorts of day indexes first..last."""
    first = max(first, 0)
    return {
        key: Counts(s[last + 1][0] - s[first][0], s[last + 1][1] - s[first][1])
        for key, s in totals.items()
    }


def _watch(
    rule: Rule, history: list[Day], first_check: int
) -> list[tuple[str, tuple[str, ...], int]]:
    """The service's check, run once a day from `first_check`: ("open"|"resolve", key, day)."""
    opened: dict[tuple[str, str, str], Counts] = {}
    log: list[tuple[str, tuple[str, ...], int]] = []
    totals = _prefix(history)
    for today in range(first_check, len(history) + rule.window_days + 1):
        (b0, b1), (c0, c1) = rule.periods(START + timedelta(days=today))
        index = lambda d: (d - START).days  # noqa: E731
        if index(c1) >= len(history):
            break
        baseline = _sum(totals, index(b0), index(b1))
        current = _sum(totals, index(c0), index(c1))
        for key, base in list(opened.items()):
            done, _ = recovered(rule, base, current.get(key, Counts(0, 0)))
            if done:
                del opened[key]
                log.append(("resolve", key, today))
        steps = {k: (baseline[k], current.get(k, Counts(0, 0))) for k in baseline}
        for finding in leaking(rule, steps):
            if finding.key not in opened:
                opened[finding.key] = finding.baseline
                log.append(("open", finding.key, today))
    return log


RULE = Rule()


@pytest.mark.parametrize("seed", range(20))
def test_a_stable_funnel_raises_no_alert_over_a_simulated_quarter(seed: int) -> None:
    rng = random.Random(seed)
    days = RULE.baseline_days + RULE.current_days + RULE.window_days + 91
    history = _history(rng, days)
    log = _watch(
        RULE, history, first_check=RULE.baseline_days + RULE.current_days + RULE.window_days
    )
    checks = days - (RULE.baseline_days + RULE.current_days + RULE.window_days)
    assert checks >= 91
    assert log == []


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    source=st.sampled_from(["google", "facebook"]),
    step=st.sampled_from(STEPS),
    factor=st.floats(0.2, 0.5),
)
def test_a_real_drop_is_alerted_within_the_stated_delay_and_resolved_after_recovery(
    seed: int, source: str, step: tuple[str, str], factor: float
) -> None:
    """A step of a source with >= 80 entries a day keeps `factor` of its rate (a drop of
    half or more) for the cohorts of 30 days from day 60, then recovers."""
    rng = random.Random(seed)
    drop_from, drop_to, days = 60, 90, 150
    rate_of = {(*step, source, d): RATES[step] * factor for d in range(drop_from, drop_to)}
    history = _history(rng, days, rate_of)
    log = _watch(
        RULE, history, first_check=RULE.baseline_days + RULE.current_days + RULE.window_days
    )
    key = (*step, f"source:{source}")
    opens = [day for kind, k, day in log if kind == "open" and k == key]
    assert opens, log
    assert drop_from < opens[0] <= drop_from + RULE.delay_days()
    resolves = [day for kind, k, day in log if kind == "resolve" and k == key]
    assert resolves
    assert resolves[0] > drop_to
    # Nothing else raised an alert but this step (overall, or its source).
    assert {k for _, k, _ in log} <= {key, (*step, "all")}


def test_the_test_is_one_sided_and_the_budget_is_split_over_the_tests() -> None:
    assert drop_p_value(Counts(1000, 400), Counts(1000, 300)) < 1e-5
    assert drop_p_value(Counts(1000, 300), Counts(1000, 400)) > 0.99  # a rise is no leak
    assert drop_p_value(Counts(0, 0), Counts(10, 1)) == 1.0
    assert RULE.alpha(20) == pytest.approx(0.05 / (91 * 20))
    # Too small a sample is not tested at all, however large the drop looks.
    assert leaking(RULE, {("a", "b", "all"): (Counts(99, 50), Counts(99, 0))}) == []
    assert recovered(RULE, Counts(1000, 400), Counts(50, 40)) == (
        False,
        drop_p_value(Counts(1000, 400), Counts(50, 40)),
    )


def test_the_leak_window_is_one_of_the_report_grid() -> None:
    from pydantic import ValidationError

    from reporting.settings import ReportingSettings

    assert ReportingSettings(leak_window_days=14).leak_window_days == 14
    with pytest.raises(ValidationError, match="leak_window_days"):
        ReportingSettings(leak_window_days=10)
