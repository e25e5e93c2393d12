"""A lead's stage entries, and the order they happened in (pure).

The tracker dates moves, so entries sort by time; but one signal can make several moves at
the same instant (a lost lead that comes back is `recycled`, then re-enters the line). Their
order is the tracker's chain of moves: each entry follows the one whose stage it came from.
Sorting ties by position instead would put `recycled` (an exit, after the line) last and read
it as the current stage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from itertools import groupby, pairwise

from pydantic import BaseModel, ConfigDict


class StageEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    funnel_id: str
    stage: str
    position: int
    at: datetime
    # The stage the move came from (the event's from_stage); None on entry, and in entries
    # stored before it was kept: those order ties by position, as they always did.
    from_stage: str | None = None


def in_move_order(entries: Iterable[StageEntry]) -> list[StageEntry]:
    """Entries by time; ties of one funnel in the tracker's chain of moves.

    A function of the set of entries only, so any arrival order gives the same history.
    """
    if not isinstance(entries, list):
        entries = list(entries)
    if all(a.at < b.at for a, b in pairwise(entries)):
        return list(entries)  # in time order without a tie: already the move order
    chains: list[tuple[datetime, str, int, StageEntry]] = []
    by_funnel: dict[str, list[StageEntry]] = defaultdict(list)
    for entry in entries:
        by_funnel[entry.funnel_id].append(entry)
    for funnel_id, own in by_funnel.items():
        for index, entry in enumerate(_chained(own)):
            chains.append((entry.at, funnel_id, index, entry))
    return [entry for *_, entry in sorted(chains, key=lambda item: item[:3])]


def _chained(entries: list[StageEntry]) -> list[StageEntry]:
    """One funnel's entries: by time, and within an instant following from_stage."""
    out: list[StageEntry] = []
    for _, tied in groupby(sorted(entries, key=_fallback), key=lambda e: e.at):
        left = list(tied)  # already in fallback order: the first candidate wins a tie
        current = out[-1].stage if out else None
        while left:
            pick = _next(left, current)
            left.remove(pick)
            out.append(pick)
            current = pick.stage
    return out


def _next(left: list[StageEntry], current: str | None) -> StageEntry:
    """The entry that moved on from `current`; else one that no other tied entry leads to
    (the start of the instant's chain); else, in a cycle or without a chain, by position."""
    follows = [e for e in left if e.from_stage is not None and e.from_stage == current]
    if follows:
        return follows[0]
    stages = {e.stage for e in left}
    heads = [e for e in left if e.from_stage is None or e.from_stage not in stages]
    return (heads or left)[0]


def _fallback(entry: StageEntry) -> tuple[datetime, int, str, str]:
    return (entry.at, entry.position, entry.stage, entry.from_stage or "")
