"""The breakdowns: which attribute of a lead, under first- or last-touch attribution; the
values the aggregate rows are keyed by, written by the projection and read by the reports."""

from __future__ import annotations

from typing import Literal

Breakdown = Literal["source", "medium", "campaign", "form", "landing_page"]
Attribution = Literal["first", "last"]
BREAKDOWNS: tuple[Breakdown, ...] = ("source", "medium", "campaign", "form", "landing_page")
ATTRIBUTIONS: tuple[Attribution, ...] = ("first", "last")
REVENUE_BREAKDOWNS: tuple[Breakdown, ...] = ("source", "medium", "campaign")

ALL = ("all", "")  # the dimension row every lead counts in once
NONE = "(none)"  # the attribute was empty
UNKNOWN = "(unknown)"  # the capture event has not arrived (yet)
BASELINE = ""  # the playbook of the touch-effectiveness row of leads no touch reached
# The playbook of the touch-effectiveness rows of offline touches (a call, a meeting, an event,
# a note that people at the business logged): "offline:call_logged", at the stage the lead was
# in when it happened.
OFFLINE = "offline:"


def dim_name(breakdown: Breakdown, attribution: Attribution) -> str:
    return f"{attribution}_{breakdown}"


def dimension(breakdown: Breakdown | None, attribution: Attribution) -> str:
    """The `dim` rows a report reads: "all", or the breakdown under its attribution."""
    return ALL[0] if breakdown is None else dim_name(breakdown, attribution)
