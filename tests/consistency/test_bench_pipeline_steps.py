"""bench.pipeline_capacity keeps the issue's default steps, and `--extra-steps` puts more
rates in their places in the series (the capacity between two default steps)."""

from __future__ import annotations

import pytest

from bench.pipeline_capacity import STEPS, all_steps, capacity


def test_the_default_steps_are_the_issues() -> None:
    assert STEPS == (10, 20, 40, 80, 160, 320)
    assert all_steps(",".join(map(str, STEPS))) == [10, 20, 40, 80, 160, 320]


def test_extra_steps_go_in_their_places_once() -> None:
    default = ",".join(map(str, STEPS))
    assert all_steps(default, "60,120") == [10, 20, 40, 60, 80, 120, 160, 320]
    assert all_steps(default, "120,60,40,400") == [10, 20, 40, 60, 80, 120, 160, 320, 400]
    assert all_steps("20,40", "30, 5") == [5, 20, 30, 40]
    # A rate listed twice in --steps is still measured twice (a repeat run).
    assert all_steps("20,20", "30") == [20, 20, 30]


def test_an_extra_step_counts_in_the_capacity() -> None:
    steps = [
        {"rate": r, "sustained": ok}
        for r, ok in zip(all_steps("20,40,80", "60"), [True, True, True, False], strict=True)
    ]
    assert capacity(steps) == 60


@pytest.mark.parametrize(("steps", "extra"), [("", ""), ("0,10", ""), ("10", "-5")])
def test_no_rate_or_a_rate_below_one_is_refused(steps: str, extra: str) -> None:
    with pytest.raises(ValueError, match="positive rates"):
        all_steps(steps, extra)
