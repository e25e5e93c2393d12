"""The breakdowns: which attribute of a lead, under first- or last-touch attribution."""

from __future__ import annotations

from typing import Literal

from reporting.domain.lead_state import LeadState, Touchpoint

Breakdown = Literal["source", "medium", "campaign", "form", "landing_page"]
Attribution = Literal["first", "last"]
BREAKDOWNS: tuple[Breakdown, ...] = ("source", "medium", "campaign", "form", "landing_page")
ATTRIBUTIONS: tuple[Attribution, ...] = ("first", "last")
REVENUE_BREAKDOWNS: tuple[Breakdown, ...] = ("source", "medium", "campaign")

ALL = ("all", "")  # the dimension row every lead counts in once
NONE = "(none)"  # the attribute was empty
UNKNOWN = "(unknown)"  # the capture event has not arrived (yet)


def dim_name(breakdown: Breakdown, attribution: Attribution) -> str:
    return f"{attribution}_{breakdown}"


def _value(tp: Touchpoint | None, breakdown: Breakdown) -> str:
    if tp is None:
        return UNKNOWN
    value: str | None = getattr(tp, breakdown)
    return value if value else NONE


def lead_dimensions(
    state: LeadState, breakdowns: tuple[Breakdown, ...] = BREAKDOWNS
) -> list[tuple[str, str]]:
    """(dimension, value) pairs a lead counts under: "all" plus one per breakdown and touch."""
    first, last = state.first_touch, state.last_touch()
    pairs = [ALL]
    for breakdown in breakdowns:
        pairs.append((dim_name(breakdown, "first"), _value(first, breakdown)))
        pairs.append((dim_name(breakdown, "last"), _value(last, breakdown)))
    return pairs
